package worker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/client/job"
	"github.com/runnel-dev/runnel/client/worker"
)

// TestWorkerOnBroker runs a worker on a queue group of an embedded broker:
// jobs that succeed, one that succeeds on its second attempt, one that
// always fails and a record that is not a job. It checks each run's
// result and the dead letters.
func TestWorkerOnBroker(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	b, err := broker.Open(t.TempDir(), broker.Options{Addr: "127.0.0.1:0", NoSync: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("open broker: %v", err)
	}
	defer b.Close()
	c, err := client.New(ctx, client.Brokers(b.Addr()))
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	defer c.Close()
	for _, topic := range []string{"jobs", "results"} {
		if _, err := c.CreateTopic(ctx, topic, 2, 1, nil); err != nil {
			t.Fatalf("create topic %s: %v", topic, err)
		}
	}

	var recs []*client.Record
	add := func(j job.Job) {
		j.Version, j.Attempt, j.ScheduledAt, j.PublishedAt = job.Version, 1, time.Now(), time.Now()
		j.ID = job.FireID(j.Name, j.ScheduledAt)
		v, err := j.Encode()
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &client.Record{Topic: "jobs", Key: []byte(j.Name), Value: v,
			Headers: []client.Header{{Key: job.MsgIDHeader, Value: []byte(j.ID)}}})
	}
	for i := range 10 {
		add(job.Job{Name: fmt.Sprintf("ok-%d", i)})
	}
	add(job.Job{Name: "flaky"})
	add(job.Job{Name: "bad", MaxAttempts: 2})
	recs = append(recs, &client.Record{Topic: "jobs", Key: []byte("plain"), Value: []byte("hello")})
	if err := c.ProduceSync(ctx, recs...); err != nil {
		t.Fatalf("produce: %v", err)
	}

	q, err := c.Queue("workers", "jobs", client.QueueOptions{Visibility: 10 * time.Second, Prefetch: 4})
	if err != nil {
		t.Fatalf("queue: %v", err)
	}
	h := func(ctx context.Context, j *worker.Job) error {
		switch {
		case j.DecodeError != nil:
			return worker.Permanent(fmt.Errorf("not a job: %w", j.DecodeError))
		case j.Name == "flaky" && j.Attempt == 1:
			return errors.New("first attempt fails")
		case j.Name == "bad":
			return errors.New("always fails")
		}
		return nil
	}
	w, err := worker.New(q, h, worker.Options{
		Concurrency: 4,
		Backoff:     func(int) time.Duration { return 50 * time.Millisecond },
		Results:     c, ResultsTopic: "results",
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(runCtx) }()

	// 10 successes, flaky 2 runs, bad 2 runs, hello 1 run.
	var results []*client.Record
	waitFor(t, "15 results", func() bool {
		results = readTopic(t, ctx, c, "results")
		return len(results) >= 15
	})
	stop()
	if err := <-runErr; err != nil {
		t.Errorf("Run: %v", err)
	}
	if err := q.Close(); err != nil {
		t.Errorf("close queue: %v", err)
	}

	outcomes := map[string][]string{}
	for _, r := range results {
		res, err := job.DecodeResult(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		outcomes[res.Name] = append(outcomes[res.Name], res.Outcome)
	}
	want := map[string][]string{"flaky": {"retry", "success"}, "bad": {"retry", "dead"}, "": {"failed"}}
	for i := range 10 {
		want[fmt.Sprintf("ok-%d", i)] = []string{"success"}
	}
	if diff := cmp.Diff(want, outcomes); diff != "" {
		t.Errorf("outcomes by job (-want +got):\n%s", diff)
	}

	dead := map[string]job.DeadLetter{}
	for _, r := range readTopic(t, ctx, c, "jobs.dlq") {
		dl, err := job.DecodeDeadLetter(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		dead[dl.Job.Name] = dl
	}
	if len(dead) != 2 || dead["bad"].Attempts != 2 || dead["bad"].Job.Attempt != 2 ||
		dead[""].Attempts != 1 || string(dead[""].Job.Payload) != `"hello"` {
		t.Errorf("dead letters %+v, want bad after 2 attempts and the plain record after 1", dead)
	}
}

// readTopic returns the records of every partition of topic, up to the
// end each has now; none when the topic does not exist yet.
func readTopic(t *testing.T, ctx context.Context, c *client.Client, topic string) []*client.Record {
	t.Helper()
	info, err := c.DescribeTopic(ctx, topic)
	if errors.Is(err, client.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("describe %s: %v", topic, err)
	}
	var out []*client.Record
	for _, p := range info.Partitions {
		offs, err := c.ListOffsets(ctx, topic, p.Partition, client.End())
		if err != nil {
			t.Fatalf("offsets of %s/%d: %v", topic, p.Partition, err)
		}
		if offs.End == 0 {
			continue
		}
		for r, err := range c.Consume(ctx, topic, p.Partition, client.Start()) {
			if err != nil {
				t.Fatalf("read %s/%d: %v", topic, p.Partition, err)
			}
			out = append(out, r.Clone())
			if r.Offset >= offs.End-1 {
				break
			}
		}
	}
	return out
}
