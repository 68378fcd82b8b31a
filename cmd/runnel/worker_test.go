package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/client/job"
)

// TestWorkerExec runs `runnel worker --exec` on jobs that succeed, fail
// every attempt and time out, and checks the commands' effects, the
// results topic and the dead letters.
func TestWorkerExec(t *testing.T) {
	addr := startBroker(t, broker.Options{NoSync: true})
	mustCLI(t, addr, "", "topic", "create", "jobs", "-p", "2")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	c := dial(t, ctx, addr)

	out := filepath.Join(t.TempDir(), "out")
	at := time.Date(2026, 11, 22, 16, 0, 1, 0, time.UTC)
	var recs []*client.Record
	for _, j := range []job.Job{
		{Name: "append", Command: `echo "$RUNNEL_SCHEDULED_AT $RUNNEL_ATTEMPT $RUNNEL_JOB_NAME" >> ` + out},
		{Name: "fails", Command: "echo nope; exit 1", MaxAttempts: 2},
		{Name: "slow", Command: "sleep 60 & sleep 60", MaxAttempts: 1, TimeoutMS: 500},
	} {
		j.Version, j.Attempt, j.ScheduledAt, j.PublishedAt = job.Version, 1, at, time.Now()
		j.ID = job.FireID(j.Name, at)
		v, err := j.Encode()
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &client.Record{Topic: "jobs", Key: []byte(j.Name), Value: v})
	}
	if err := c.ProduceSync(ctx, recs...); err != nil {
		t.Fatalf("produce jobs: %v", err)
	}

	runCtx, stop := context.WithCancel(ctx)
	done, stderr := startCLI(runCtx, "worker", "--topic", "jobs", "--group", "workers", "--exec", "--concurrency", "2",
		"--results", "results", "--kill-grace", "200ms", "--brokers", addr)

	// append runs once, fails twice, slow once.
	var results []*client.Record
	waitFor(t, "4 results", func() bool {
		results = topicRecords(t, ctx, c, "results")
		return len(results) >= 4
	})
	stop()
	if err := <-done; err != nil {
		t.Fatalf("runnel worker: %v; stderr:\n%s", err, stderr)
	}
	outcomes := map[string]string{}
	for _, r := range results {
		res, err := job.DecodeResult(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		outcomes[res.Name] += res.Outcome + " "
	}
	want := map[string]string{"append": "success ", "fails": "retry dead ", "slow": "dead "}
	for name, w := range want {
		if outcomes[name] != w {
			t.Errorf("%s outcomes %q, want %q", name, outcomes[name], w)
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "2026-11-22T16:00:01Z 1 append\n"; got != want {
		t.Errorf("the append job wrote %q, want %q", got, want)
	}

	dead := map[string]job.DeadLetter{}
	for _, r := range topicRecords(t, ctx, c, "jobs.dlq") {
		dl, err := job.DecodeDeadLetter(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		dead[dl.Job.Name] = dl
	}
	if dl := dead["fails"]; dl.Attempts != 2 || dl.ExitCode == nil || *dl.ExitCode != 1 || dl.Output != "nope\n" {
		t.Errorf("dead letter of fails %+v, want 2 attempts, exit code 1 and its output", dl)
	}
	if dl := dead["slow"]; dl.Attempts != 1 || dl.ExitCode == nil || *dl.ExitCode != 128+int(syscall.SIGTERM) ||
		!strings.Contains(dl.Reason, "timed out after 500ms") {
		t.Errorf("dead letter of slow %+v, want a timeout ended by SIGTERM", dl)
	}
	if len(dead) != 2 {
		t.Errorf("%d dead letters, want 2", len(dead))
	}
}

// TestWorkerFlagErrors checks that bad flags fail with a line that says
// what to give.
func TestWorkerFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"worker", "--group", "g"}, "--topic"},
		{[]string{"worker", "--topic", "t", "--group", "g", "--concurrency", "0"}, "--concurrency 0"},
		{[]string{"worker", "--topic", "t", "--group", "g", "--timeout", "0s"}, "--timeout 0s"},
		{[]string{"worker", "--topic", "t", "--group", "g", "--prefetch", "-1"}, "--prefetch -1"},
	} {
		_, _, errLine := cli(t, "127.0.0.1:1", "", tc.args...)
		if !strings.Contains(errLine, tc.want) {
			t.Errorf("runnel %s: %q, want it to name %s", strings.Join(tc.args, " "), errLine, tc.want)
		}
	}
}
