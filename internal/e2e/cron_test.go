package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/client/job"
)

// TestCronWorkersOnDevCluster is the cron and worker check as a user runs
// it: on `runnel dev`, two `runnel cron` instances publish a job every
// second whose command appends its scheduled time to a file, and three
// `runnel worker --exec` run them. Every second the crons ran appears in
// the file exactly once.
func TestCronWorkersOnDevCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds runnel and runs a three-node cluster")
	}
	bin := buildRunnel(t)
	d := startDev(t, bin)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	out := filepath.Join(d.dir, "seconds.txt")
	jobs := filepath.Join(d.dir, "jobs.yaml")
	if err := os.WriteFile(jobs, []byte(`jobs:
  - name: append
    schedule: "@every 1s"
    topic: check.jobs
    command: echo "$RUNNEL_SCHEDULED_AT" >> `+out+`
    partitions: 3
`), 0o644); err != nil {
		t.Fatal(err)
	}
	// --grace 1m: on a busy machine a late fire is still made, so that
	// only a duplicate or a lost publish can leave a second out.
	stopCron1 := d.startClient("cron1", "cron", "--jobs", jobs, "--grace", "1m")
	stopCron2 := d.startClient("cron2", "cron", "--jobs", jobs, "--grace", "1m")

	// The workers need the topic the crons create.
	for {
		if _, err := d.describe(d.brokers, "check.jobs"); err == nil {
			break
		}
		if !pause(ctx) {
			t.Fatalf("the crons did not create check.jobs; logs in %s", d.dir)
		}
	}
	var stopWorkers []func()
	for _, name := range []string{"worker1", "worker2", "worker3"} {
		stopWorkers = append(stopWorkers, d.startClient(name, "worker", "--topic", "check.jobs", "--group", "check", "--exec"))
	}

	// Run until the file has 8 seconds, then stop the crons.
	for len(fileLines(t, out)) < 8 {
		if !pause(ctx) {
			t.Fatalf("%d fires ran in 3 minutes; logs in %s", len(fileLines(t, out)), d.dir)
		}
	}
	stopCron1()
	stopCron2()

	// Every fire published runs, once.
	published := d.publishedFires(t, "check.jobs")
	for {
		got := fileLines(t, out)
		if len(got) >= len(published) {
			break
		}
		if !pause(ctx) {
			t.Fatalf("%d of %d published fires ran; logs in %s", len(got), len(published), d.dir)
		}
	}
	for _, stop := range stopWorkers {
		stop()
	}
	got := fileLines(t, out)
	slices.Sort(got)
	if !slices.Equal(got, published) {
		t.Errorf("seconds run:\n%v\nwant the fires published, each once:\n%v", got, published)
	}
	for i := 1; i < len(published); i++ {
		a, _ := time.Parse(time.RFC3339, published[i-1])
		b, _ := time.Parse(time.RFC3339, published[i])
		if b.Sub(a) != time.Second {
			t.Errorf("fires %s and %s: a second is missing or doubled", published[i-1], published[i])
		}
	}
}

// startClient runs `runnel ARGS --brokers` the cluster in a process group
// of its own, its output in DIR/name.log. stop, also run when the test
// ends, sends it SIGTERM, then SIGKILL after 20 seconds.
func (d *devCluster) startClient(name string, args ...string) (stop func()) {
	d.t.Helper()
	cmd := exec.Command(d.bin, append(args, "--brokers", d.brokers)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, err := os.Create(filepath.Join(d.dir, name+".log"))
	if err != nil {
		d.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		d.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	stop = func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	d.t.Cleanup(stop)
	return stop
}

// publishedFires returns the scheduled times (RFC 3339) of the job records
// in topic, sorted.
func (d *devCluster) publishedFires(t *testing.T, topic string) []string {
	t.Helper()
	var out []string
	for line := range strings.Lines(mustRun(t, d.bin, d.brokers, nil, "consume", topic, "--until-end", "--format", "json")) {
		var r jsonRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("bad json line %q: %v", line, err)
		}
		j, err := job.Decode([]byte(r.Value))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, j.ScheduledAt.Format(time.RFC3339))
	}
	slices.Sort(out)
	return out
}

// pause waits a tenth of a second between two looks at another process's
// progress; it reports false once ctx has ended.
func pause(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(100 * time.Millisecond):
		return true
	}
}

// fileLines returns the lines of the file at path (none when it does not
// exist yet).
func fileLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}
