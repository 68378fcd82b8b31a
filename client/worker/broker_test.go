package worker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/client/job"
	"github.com/runnel-dev/runnel/client/worker"
	"github.com/runnel-dev/runnel/internal/testcluster"
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

// openBroker starts a broker and a client of it for the test.
func openBroker(t *testing.T, ctx context.Context, topics ...string) *client.Client {
	t.Helper()
	b, err := broker.Open(t.TempDir(), broker.Options{Addr: "127.0.0.1:0", NoSync: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("open broker: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	c, err := client.New(ctx, client.Brokers(b.Addr()))
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	for _, topic := range topics {
		if _, err := c.CreateTopic(ctx, topic, 1, 1, nil); err != nil {
			t.Fatalf("create topic %s: %v", topic, err)
		}
	}
	return c
}

// produceJob writes a job named name to topic.
func produceJob(t *testing.T, ctx context.Context, c *client.Client, topic, name string) {
	t.Helper()
	now := time.Now()
	j := job.Job{Version: job.Version, ID: job.FireID(name, now), Name: name, ScheduledAt: now, PublishedAt: now, Attempt: 1}
	v, err := j.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ProduceSync(ctx, &client.Record{Topic: topic, Key: []byte(name), Value: v}); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// TestLongJobOnBroker checks that a job running for several visibility
// timeouts keeps its lease on a real queue: it runs once and its ack
// holds.
func TestLongJobOnBroker(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	c := openBroker(t, ctx, "jobs")
	produceJob(t, ctx, c, "jobs", "long")
	const visibility = 500 * time.Millisecond
	q, err := c.Queue("workers", "jobs", client.QueueOptions{Visibility: visibility})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	res := &fakeProducer{}
	done := make(chan struct{})
	h := func(ctx context.Context, j *worker.Job) error {
		select {
		case <-time.After(4 * visibility): // the job's work
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		return nil
	}
	logs := newWarnLog()
	// The worker takes the queue's visibility.
	w, err := worker.New(q, h, worker.Options{Results: notify{res, done}, ResultsTopic: "results",
		Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(runCtx) }()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("no result within a minute")
	}
	stop()
	if err := <-runErr; err != nil {
		t.Errorf("Run: %v", err)
	}
	rs := res.results(t)
	if len(rs) != 1 || rs[0].Outcome != job.OutcomeSuccess || rs[0].Attempt != 1 {
		t.Errorf("results %+v, want one successful first attempt", rs)
	}
	if msgs := logs.messages(); len(msgs) != 0 {
		t.Errorf("worker logged %q, want nothing: the extends and the ack succeed", msgs)
	}
}

// warnLog is a slog.Handler that keeps the messages at Warn and above.
type warnLog struct {
	mu   *sync.Mutex
	msgs *[]string
}

func newWarnLog() warnLog { return warnLog{mu: new(sync.Mutex), msgs: new([]string)} }

func (l warnLog) Enabled(_ context.Context, level slog.Level) bool { return level >= slog.LevelWarn }
func (l warnLog) WithAttrs([]slog.Attr) slog.Handler               { return l }
func (l warnLog) WithGroup(string) slog.Handler                    { return l }
func (l warnLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	*l.msgs = append(*l.msgs, r.Message)
	return nil
}

func (l warnLog) messages() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), *l.msgs...)
}

// notify is a Producer that closes done after its first record.
type notify struct {
	*fakeProducer
	done chan struct{}
}

func (n notify) ProduceSync(ctx context.Context, recs ...*client.Record) error {
	err := n.fakeProducer.ProduceSync(ctx, recs...)
	select {
	case <-n.done:
	default:
		close(n.done)
	}
	return err
}

// TestDrainOnBroker checks that a job a drain stops goes back to the
// queue when it is closed: another consumer gets it at once, as its
// second attempt, long before its lease would have ended.
func TestDrainOnBroker(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	c := openBroker(t, ctx, "jobs")
	produceJob(t, ctx, c, "jobs", "stuck")
	opts := client.QueueOptions{Visibility: time.Hour, Prefetch: 1}
	q, err := c.Queue("workers", "jobs", opts)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	h := func(ctx context.Context, j *worker.Job) error {
		close(started)
		<-ctx.Done()
		return context.Cause(ctx)
	}
	w, err := worker.New(q, h, worker.Options{Visibility: time.Hour, DrainTimeout: 10 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(runCtx) }()
	<-started
	stop()
	if err := <-runErr; err != nil {
		t.Errorf("Run: %v", err)
	}
	if err := q.Close(); err != nil {
		t.Fatalf("close queue: %v", err)
	}

	q2, err := c.Queue("workers", "jobs", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	d, err := q2.Next(ctx)
	if err != nil {
		t.Fatalf("the stopped job did not come back: %v", err)
	}
	if d.Attempt != 2 {
		t.Errorf("the stopped job came back as attempt %d, want 2", d.Attempt)
	}
	if err := q2.Ack(ctx, d); err != nil {
		t.Errorf("ack: %v", err)
	}
}

// TestWorkersCreateResultsTopic starts two workers together on a results
// topic that does not exist, each with a client that asks another node
// first: one creates the topic, the other finds it created, and the first
// result of each is written.
func TestWorkersCreateResultsTopic(t *testing.T) {
	t.Run("single-node", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		b, err := broker.Open(t.TempDir(), broker.Options{Addr: "127.0.0.1:0", NoSync: true, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatalf("open broker: %v", err)
		}
		t.Cleanup(func() { b.Close() })
		twoWorkers(t, ctx, []string{b.Addr(), b.Addr(), b.Addr()})
	})
	t.Run("cluster", func(t *testing.T) {
		if testing.Short() {
			t.Skip("starts a three-node cluster")
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		twoWorkers(t, ctx, startCluster(t, ctx))
	})
}

func twoWorkers(t *testing.T, ctx context.Context, addrs []string) {
	admin := newClient(t, ctx, addrs...)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	ran := make(chan string, 2)
	h := func(ctx context.Context, j *worker.Job) error {
		ran <- j.Name
		return nil
	}
	logs := newWarnLog()
	var ws []*worker.Worker
	for i := range 2 {
		jobs := fmt.Sprintf("jobs-%d", i)
		if _, err := admin.CreateTopic(ctx, jobs, 1, 0, nil); err != nil {
			t.Fatalf("create topic %s: %v", jobs, err)
		}
		produceJob(t, ctx, admin, jobs, fmt.Sprintf("job-%d", i))
		c := newClient(t, ctx, addrs[i], addrs[(i+1)%len(addrs)])
		q, err := c.Queue("workers", jobs, client.QueueOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		w, err := worker.New(q, h, worker.Options{Results: c, ResultsTopic: "results", Logger: slog.New(logs)})
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	runErr := make(chan error, len(ws))
	for _, w := range ws {
		go func() { runErr <- w.Run(runCtx) }()
	}
	for range ws {
		select {
		case <-ran:
		case err := <-runErr:
			t.Fatalf("a worker stopped: %v", err)
		case <-ctx.Done():
			t.Fatal("the jobs did not run within a minute")
		}
	}
	// Run drains: it returns once the results of the jobs that ran are
	// written, or their failure logged.
	stop()
	for range ws {
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	if msgs := logs.messages(); len(msgs) != 0 {
		t.Errorf("workers logged %q, want nothing", msgs)
	}
	// The results are written; a read can still reach a replica that has
	// not applied the last of them (a leader that just moved answers from
	// its follower copy), so read until both show or the test's time ends.
	want := []string{"job-0", "job-1"}
	var names []string
	for {
		names = names[:0]
		for _, r := range readTopic(t, ctx, admin, "results") {
			res, err := job.DecodeResult(r.Value)
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, res.Name)
		}
		slices.Sort(names)
		if slices.Equal(names, want) || len(names) > len(want) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	if !slices.Equal(names, want) {
		t.Errorf("results of %q, want %q", names, want)
	}
}

func startCluster(t *testing.T, ctx context.Context) []string {
	return testcluster.Start(t, ctx)
}

func newClient(t *testing.T, ctx context.Context, addrs ...string) *client.Client {
	return testcluster.Client(t, ctx, addrs...)
}
