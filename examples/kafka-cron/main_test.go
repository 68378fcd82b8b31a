package main

import (
	"context"
	"io"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/client/cron"
	"github.com/runnel-dev/runnel/client/job"
	"github.com/runnel-dev/runnel/client/worker"
)

// TestKafkaCron runs the example's job file, with every job every second,
// against an embedded broker until each job has shown what it is for: the
// always-failing job runs 3 times and leaves one dead letter, the flaky and
// the slow jobs end in success, and each cluster's workers run only its
// own jobs.
func TestKafkaCron(t *testing.T) {
	if testing.Short() {
		t.Skip("runs jobs for several seconds")
	}
	jobs, err := cron.Load("jobs.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cluster := map[string]string{}
	for i := range jobs {
		cluster[jobs[i].Name] = jobs[i].Topic
		jobs[i].Schedule = "@every 1s"
	}

	var (
		mu      sync.Mutex
		results = map[string][]job.Result{} // by job ID
		dead    = map[string][]job.DeadLetter{}
		changed = make(chan struct{}, 1)
	)
	events := func(e event) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case e.result != nil:
			results[e.result.ID] = append(results[e.result.ID], *e.result)
			if cluster[e.result.Name] != e.cluster {
				t.Errorf("job %s ran in %s, want %s", e.result.ID, e.cluster, cluster[e.result.Name])
			}
		case e.dead != nil:
			dead[e.dead.Job.ID] = append(dead[e.dead.Job.ID], *e.dead)
		}
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	// done reports whether every job has shown its outcome, and the ID
	// of a fire of always-fails that was dead-lettered.
	done := func() (string, bool) {
		mu.Lock()
		defer mu.Unlock()
		success := map[string]bool{}
		for _, rs := range results {
			for _, r := range rs {
				if r.Outcome == job.OutcomeSuccess {
					success[r.Name] = true
				}
			}
		}
		var deadID string
		for id, dls := range dead {
			// Both the dead letter and the last run's result are in.
			if len(dls) > 0 && dls[0].Job.Name == "always-fails" && slices.ContainsFunc(results[id], func(r job.Result) bool {
				return r.Outcome == job.OutcomeDead
			}) {
				deadID = id
			}
		}
		return deadID, deadID != "" && success["flaky"] && success["slow"] && success["normal"]
	}

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		errc <- run(runCtx, config{
			jobs: jobs, workers: 2, out: io.Discard, events: events,
			backoff: worker.ExponentialBackoff(20*time.Millisecond, 100*time.Millisecond, 0.2),
		})
	}()
	var deadID string
	for {
		id, ok := done()
		if ok {
			deadID = id
			break
		}
		select {
		case err := <-errc:
			t.Fatalf("run stopped: %v", err)
		case <-ctx.Done():
			mu.Lock()
			t.Fatalf("not every job showed its outcome in 2 minutes; results %v, dead letters %v", results, dead)
		case <-changed:
		}
	}
	stop()
	if err := <-errc; err != nil {
		t.Fatalf("run: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	var outcomes []string
	for _, r := range results[deadID] {
		outcomes = append(outcomes, r.Outcome)
		if r.ExitCode == nil || *r.ExitCode != 1 {
			t.Errorf("%s attempt %d: exit code %v, want 1", deadID, r.Attempt, r.ExitCode)
		}
	}
	if want := []string{"retry", "retry", "dead"}; len(outcomes) != 3 || outcomes[0] != want[0] || outcomes[1] != want[1] || outcomes[2] != want[2] {
		t.Errorf("%s ran with outcomes %v, want %v", deadID, outcomes, want)
	}
	dls := dead[deadID]
	if len(dls) != 1 {
		t.Fatalf("%s has %d dead letters, want 1", deadID, len(dls))
	}
	if dl := dls[0]; dl.Attempts != 3 || dl.ExitCode == nil || *dl.ExitCode != 1 || dl.Reason == "" || dl.Topic != "cluster-a.jobs" {
		t.Errorf("dead letter = %+v", dl)
	}
	for id, rs := range results {
		for _, r := range rs {
			if r.Name == "slow" && r.Outcome == job.OutcomeSuccess && r.DurationMS < 3000 {
				t.Errorf("slow job %s took %dms, want at least its 3s sleep", id, r.DurationMS)
			}
		}
	}
}

// TestPrometheusFiles checks prometheus.yml and alerts.yml, and runs the
// alert rules' unit tests, with promtool when it is installed (Debian
// package prometheus).
func TestPrometheusFiles(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed")
	}
	for _, args := range [][]string{
		{"check", "config", "prometheus.yml"},
		{"test", "rules", "alerts_test.yml"},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
