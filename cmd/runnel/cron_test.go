package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client/job"
)

func writeCronJobs(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "jobs.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const cronJobs = `jobs:
  - name: tick
    schedule: "@every 1s"
    topic: ticks
    command: date
    max_attempts: 2
  - name: nightly
    schedule: "CRON_TZ=Europe/Paris 0 3 * * *"
    topic: jobs
    payload: {kind: export}
`

func TestCronNext(t *testing.T) {
	path := writeCronJobs(t, cronJobs)
	out, _, errLine := runCLI(t, "", "cron", "next", "--jobs", path, "--count", "2", "--from", "2026-11-22T16:00:00Z")
	if errLine != "" {
		t.Fatal(errLine)
	}
	want := `SCHEDULED (UTC)       IN       JOB      TOPIC
2026-11-22T16:00:01Z  1s       tick     ticks
2026-11-22T16:00:02Z  2s       tick     ticks
2026-11-23T02:00:00Z  10h0m0s  nightly  jobs
2026-11-24T02:00:00Z  34h0m0s  nightly  jobs
`
	if out != want {
		t.Errorf("cron next =\n%s\nwant\n%s", out, want)
	}

	out, _, errLine = runCLI(t, "", "cron", "next", "--jobs", path, "--count", "1", "--from", "2026-11-22T16:00:00Z", "--format", "json")
	if errLine != "" {
		t.Fatal(errLine)
	}
	var fires []fireJSON
	if err := json.Unmarshal([]byte(out), &fires); err != nil {
		t.Fatalf("cron next --format json: %v\n%s", err, out)
	}
	if len(fires) != 2 || fires[0].ID != "tick@2026-11-22T16:00:01Z" || fires[1].Topic != "jobs" ||
		!fires[1].ScheduledAt.Equal(time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC)) {
		t.Errorf("cron next --format json = %+v", fires)
	}
}

func TestCronErrors(t *testing.T) {
	bad := writeCronJobs(t, "jobs:\n  - name: a\n    schedule: \"* * *\"\n    topic: t\n    command: x\n    retries: 3\n")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"cron", "next", "--jobs", bad}, bad + ":3: job \"a\": schedule \"* * *\""},
		{[]string{"cron", "next", "--jobs", bad}, "; " + bad + ":6: job \"a\": unknown field \"retries\""},
		{[]string{"cron", "--jobs", bad}, bad + ":3:"},
		{[]string{"cron"}, "--jobs FILE is required"},
		{[]string{"cron", "next", "--jobs", bad, "--count", "0"}, "--count 0"},
		{[]string{"cron", "next", "--jobs", "/nonexistent/jobs.yaml"}, "no such file"},
		{[]string{"cron", "--jobs", bad, "--producers", "0"}, "--producers 0"},
	} {
		_, _, errLine := runCLI(t, "", tc.args...)
		if !strings.Contains(errLine, tc.want) {
			t.Errorf("runnel %s: error %q, want it to contain %q", strings.Join(tc.args, " "), errLine, tc.want)
		}
	}
}

// TestCronPublishes runs `runnel cron` against a broker until it has
// published three fires, then stops it as SIGTERM would.
func TestCronPublishes(t *testing.T) {
	addr := startBroker(t, broker.Options{NoSync: true})
	path := writeCronJobs(t, cronJobs)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := l.Addr().String()
	l.Close()

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	done, stderr := startCLI(runCtx, "cron", "--jobs", path, "--brokers", addr, "--http", httpAddr, "--partitions", "2")

	c := dial(t, ctx, addr)
	var got []job.Job
	for len(got) < 3 {
		got = got[:0]
		for _, r := range topicRecords(t, ctx, c, "ticks") {
			j, err := job.Decode(r.Value)
			if err != nil {
				t.Fatal(err)
			}
			if string(r.Key) != "tick" || j.Command != "date" || j.MaxAttempts != 2 || j.Attempt != 1 {
				t.Errorf("record key %q, job %+v", r.Key, j)
			}
			got = append(got, j)
		}
		select {
		case err := <-done:
			t.Fatalf("runnel cron stopped: %v\n%s", err, stderr)
		case <-ctx.Done():
			t.Fatalf("runnel cron published %d fires in a minute\n%s", len(got), stderr)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if info, err := c.DescribeTopic(ctx, "ticks"); err != nil || len(info.Partitions) != 2 {
		t.Errorf("ticks: %+v, %v; want 2 partitions (--partitions)", info, err)
	}
	if _, err := c.DescribeTopic(ctx, "jobs"); err != nil {
		t.Errorf("topic jobs of the nightly job was not created: %v", err)
	}

	for path, want := range map[string]string{"/livez": "ok", "/metrics": "runnel_cron_jobs 2"} {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %s, want %q in it", path, body, want)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("runnel cron: %v", err)
	}
	if !strings.Contains(stderr.String(), "runnel cron: stopped") {
		t.Errorf("stderr has no stop line:\n%s", stderr)
	}
}
