package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/client/job"
)

// TestCronWorkersOnDevCluster is the cron and worker check as a user runs
// it, with real processes: on `runnel dev`, two `runnel cron` instances
// publish a job every second whose command appends its scheduled time to a
// file, and three `runnel worker --exec` run them. Every second the crons
// ran appears in the file exactly once.
func TestCronWorkersOnDevCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds runnel and runs a three-node cluster")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "runnel")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/runnel-dev/runnel/cmd/runnel").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// start runs bin with args in a process group of its own, stopped with
	// SIGTERM (then SIGKILL) when the test ends, or by stop.
	start := func(name string, args ...string) (stop func(), stdout io.Reader) {
		cmd := exec.Command(bin, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		logf, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = logf
		pipe, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
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
		t.Cleanup(stop)
		return stop, pipe
	}

	_, devOut := start("dev", "dev", "--nodes", "3", "--port", "0", "--data", filepath.Join(dir, "cluster"))
	brokers := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(devOut)
		for sc.Scan() {
			if b, ok := strings.CutPrefix(sc.Text(), "RUNNEL_BROKERS="); ok {
				brokers <- b
			}
		}
		io.Copy(io.Discard, devOut)
	}()
	var addrs string
	select {
	case addrs = <-brokers:
	case <-ctx.Done():
		t.Fatalf("runnel dev did not start; logs in %s", dir)
	}

	out := filepath.Join(dir, "seconds.txt")
	jobs := filepath.Join(dir, "jobs.yaml")
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
	stopCron1, _ := start("cron1", "cron", "--jobs", jobs, "--brokers", addrs, "--grace", "1m")
	stopCron2, _ := start("cron2", "cron", "--jobs", jobs, "--brokers", addrs, "--grace", "1m")

	c, err := client.New(ctx, client.Brokers(addrs))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The workers need the topic the crons create.
	for {
		if _, err := c.DescribeTopic(ctx, "check.jobs"); err == nil {
			break
		}
		if !cronE2EPause(ctx) {
			t.Fatalf("the crons did not create check.jobs; logs in %s", dir)
		}
	}
	var stopWorkers []func()
	for _, name := range []string{"worker1", "worker2", "worker3"} {
		stop, _ := start(name, "worker", "--topic", "check.jobs", "--group", "check", "--exec", "--brokers", addrs)
		stopWorkers = append(stopWorkers, stop)
	}

	// Run until the file has 8 seconds, then stop the crons.
	for len(cronE2ELines(t, out)) < 8 {
		if !cronE2EPause(ctx) {
			t.Fatalf("%d fires ran in 3 minutes; logs in %s", len(cronE2ELines(t, out)), dir)
		}
	}
	stopCron1()
	stopCron2()

	// Every fire published runs, once.
	published := cronPublishedFires(t, ctx, c, "check.jobs")
	for {
		got := cronE2ELines(t, out)
		if len(got) >= len(published) {
			break
		}
		if !cronE2EPause(ctx) {
			t.Fatalf("%d of %d published fires ran; logs in %s", len(got), len(published), dir)
		}
	}
	for _, stop := range stopWorkers {
		stop()
	}
	got := cronE2ELines(t, out)
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

func cronE2EPause(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(100 * time.Millisecond):
		return true
	}
}

// cronE2ELines returns the lines of the file at path (none when it does not exist).
func cronE2ELines(t *testing.T, path string) []string {
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

// cronPublishedFires returns the scheduled times (RFC 3339) of the job records
// in topic, sorted.
func cronPublishedFires(t *testing.T, ctx context.Context, c *client.Client, topic string) []string {
	t.Helper()
	info, err := c.DescribeTopic(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range info.Partitions {
		offs, err := c.ListOffsets(ctx, topic, p.Partition, client.End())
		if err != nil {
			t.Fatal(err)
		}
		if offs.End == offs.Start {
			continue
		}
		for r, err := range c.Consume(ctx, topic, p.Partition, client.Start()) {
			if err != nil {
				t.Fatal(err)
			}
			j, err := job.Decode(r.Value)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, j.ScheduledAt.Format(time.RFC3339))
			if r.Offset == offs.End-1 {
				break
			}
		}
	}
	slices.Sort(out)
	return out
}
