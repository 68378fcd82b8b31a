package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/client/job"
	"github.com/runnel-dev/runnel/client/worker"
)

// startWorker runs a worker on q until the returned stop is called; stop
// returns Run's error.
func startWorker(t *testing.T, q worker.Queue, h worker.Handler, opts worker.Options) (stop func() error) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	w, err := worker.New(q, h, opts)
	if err != nil {
		t.Fatalf("new worker: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	return func() error {
		cancel()
		return <-errc
	}
}

// stopWorker stops a worker and fails the test if Run failed.
func stopWorker(t *testing.T, stop func() error) {
	t.Helper()
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func outcomes(rs []job.Result) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Outcome)
	}
	return out
}

func decodeDeadLetter(t *testing.T, dl client.DeadLetter) job.DeadLetter {
	t.Helper()
	d, err := job.DecodeDeadLetter(dl.Value)
	if err != nil {
		t.Fatalf("dead letter value: %v", err)
	}
	if d.Reason != dl.Reason {
		t.Errorf("dead letter reason %q, value's reason %q", dl.Reason, d.Reason)
	}
	return d
}

// TestOutcomes checks how each kind of handler result settles the
// delivery: ack, nack after the given delay or the backoff, reject.
func TestOutcomes(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name        string
		err         error
		wantCalls   string
		wantNacks   []time.Duration
		wantResults []string
	}{
		{"success", nil, "ack 0", nil, []string{"success"}},
		{"retry after", worker.RetryAfter(7*time.Second, boom), "nack 0 / ack 0", []time.Duration{7 * time.Second}, []string{"retry", "success"}},
		{"error", boom, "nack 0 / ack 0", []time.Duration{3 * time.Second}, []string{"retry", "success"}},
		{"permanent", worker.Permanent(boom), "reject 0", nil, []string{"failed"}},
		{"panic", nil, "nack 0 / ack 0", []time.Duration{3 * time.Second}, []string{"retry", "success"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q := newFakeQueue(30 * time.Second)
				q.addJob(t, job.Job{Name: "report", Payload: json.RawMessage(`{"n":1}`)})
				res := &fakeProducer{}
				h := func(ctx context.Context, j *worker.Job) error {
					if j.Attempt > 1 {
						return nil
					}
					if tc.name == "panic" {
						panic("handler bug")
					}
					return tc.err
				}
				stop := startWorker(t, q, h, worker.Options{
					Backoff: func(n int) time.Duration { return time.Duration(n) * 3 * time.Second },
					Results: res, ResultsTopic: "results",
				})
				q.waitSettled(t, t.Context())
				stopWorker(t, stop)

				if got := q.callList(); got != tc.wantCalls {
					t.Errorf("calls = %q, want %q", got, tc.wantCalls)
				}
				if diff := cmp.Diff(tc.wantNacks, q.nacks); diff != "" {
					t.Errorf("nack delays (-want +got):\n%s", diff)
				}
				rs := res.results(t)
				if diff := cmp.Diff(tc.wantResults, outcomes(rs)); diff != "" {
					t.Errorf("result outcomes (-want +got):\n%s", diff)
				}
				for i, r := range rs {
					if r.Attempt != i+1 || r.Name != "report" || r.ID != "report@0" {
						t.Errorf("result %d = %+v, want attempt %d of report@0", i, r, i+1)
					}
				}
				if tc.name == "permanent" {
					dl := decodeDeadLetter(t, q.rejects[0])
					if !strings.Contains(dl.Reason, "permanent failure") || !strings.Contains(dl.Reason, "boom") {
						t.Errorf("dead letter reason %q, want it to say permanent failure: boom", dl.Reason)
					}
					if dl.Attempts != 1 || dl.Job.ID != "report@0" || string(dl.Job.Payload) != `{"n":1}` || dl.ExitCode != nil {
						t.Errorf("dead letter %+v, want 1 attempt of report@0 with its payload and no exit code", dl)
					}
				}
			})
		})
	}
}

// TestMaxAttempts checks that a job that always fails runs exactly its
// max attempts, backing off between them, and is then dead-lettered once.
func TestMaxAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newFakeQueue(30 * time.Second)
		q.addJob(t, job.Job{Name: "always-fails", MaxAttempts: 3})
		q.addJob(t, job.Job{Name: "default-max"}) // the worker's MaxAttempts: 4
		res := &fakeProducer{}
		var mu sync.Mutex
		runs := map[string]int{}
		h := func(ctx context.Context, j *worker.Job) error {
			mu.Lock()
			runs[j.Name]++
			mu.Unlock()
			code := 1
			j.ExitCode, j.Output = &code, "no luck"
			return errors.New("exit 1")
		}
		stop := startWorker(t, q, h, worker.Options{MaxAttempts: 4, Results: res, ResultsTopic: "results"})
		q.waitSettled(t, t.Context())
		stopWorker(t, stop)

		if diff := cmp.Diff(map[string]int{"always-fails": 3, "default-max": 4}, runs); diff != "" {
			t.Errorf("runs (-want +got):\n%s", diff)
		}
		if len(q.rejects) != 2 {
			t.Fatalf("%d dead letters, want 2", len(q.rejects))
		}
		byName := map[string]job.DeadLetter{}
		for _, r := range q.rejects {
			dl := decodeDeadLetter(t, r)
			byName[dl.Job.Name] = dl
		}
		dl := byName["always-fails"]
		if dl.Attempts != 3 || dl.Job.Attempt != 3 || dl.ExitCode == nil || *dl.ExitCode != 1 || dl.Output != "no luck" ||
			dl.Topic != "jobs" || dl.Offset != 0 || !strings.Contains(dl.Reason, "attempt 3 of 3 failed: exit 1") {
			t.Errorf("dead letter %+v, want 3 attempts, exit code 1, output, topic jobs offset 0 and the reason", dl)
		}
		if dl := byName["default-max"]; dl.Attempts != 4 || dl.Job.MaxAttempts != 0 {
			t.Errorf("dead letter %+v, want 4 attempts of a job as published (max_attempts 0)", dl)
		}
		// The default backoff: attempt n waits 2^(n-1) s ± 20%.
		for off, delays := range q.nacksOf {
			for i, d := range delays {
				base := time.Second << i
				if lo, hi := base*8/10, base*12/10; d < lo || d > hi {
					t.Errorf("record %d: delay after attempt %d = %v, want within [%v, %v]", off, i+1, d, lo, hi)
				}
			}
		}
		if n := len(q.nacksOf[0]) + len(q.nacksOf[1]); n != 2+3 {
			t.Errorf("%d nacks, want 5 (one after each attempt but the last)", n)
		}
		var dead int
		for _, r := range res.results(t) {
			if r.Outcome == job.OutcomeDead {
				dead++
			}
		}
		if dead != 2 {
			t.Errorf("%d dead results, want 2", dead)
		}
	})
}

// TestExhaustedDeliveryNotRun checks that a delivery past the job's max
// attempts (earlier runs never finished) is dead-lettered without a run.
func TestExhaustedDeliveryNotRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newFakeQueue(30 * time.Second)
		q.addJob(t, job.Job{Name: "crashes-worker", MaxAttempts: 2})
		q.recs[0].deliveries = 2 // two leases that ended without a settle
		var runs atomic.Int32
		h := func(ctx context.Context, j *worker.Job) error {
			runs.Add(1)
			return nil
		}
		stop := startWorker(t, q, h, worker.Options{})
		q.waitSettled(t, t.Context())
		stopWorker(t, stop)

		if n := runs.Load(); n != 0 {
			t.Errorf("handler ran %d times, want 0", n)
		}
		if got := q.callList(); got != "reject 0" {
			t.Fatalf("calls = %q, want one reject", got)
		}
		dl := decodeDeadLetter(t, q.rejects[0])
		if dl.Attempts != 2 || !strings.Contains(dl.Reason, "attempt 3 of a job allowed 2") {
			t.Errorf("dead letter %+v, want 2 attempts and a reason naming attempt 3", dl)
		}
	})
}

// TestNonJobRecord checks that a record whose value is not a job reaches
// the handler with its value as payload, and is dead-lettered as JSON.
func TestNonJobRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newFakeQueue(30 * time.Second)
		q.add([]byte("plain text"))
		var got *worker.Job
		h := func(ctx context.Context, j *worker.Job) error {
			got = j
			return worker.Permanent(errors.New("not for me"))
		}
		stop := startWorker(t, q, h, worker.Options{})
		q.waitSettled(t, t.Context())
		stopWorker(t, stop)

		if got.DecodeError == nil || got.Name != "" || string(got.Payload) != "plain text" ||
			got.ID != "jobs/0/0" || got.Attempt != 1 || got.MaxAttempts != worker.DefaultMaxAttempts {
			t.Errorf("handler got %+v, want the value as payload, id jobs/0/0, attempt 1 and a decode error", got.Job)
		}
		dl := decodeDeadLetter(t, q.rejects[0])
		if string(dl.Job.Payload) != `"plain text"` || dl.Job.ID != "jobs/0/0" {
			t.Errorf("dead letter job %+v, want the value as a JSON string", dl.Job)
		}
	})
}

// TestTimeout checks that a run's context ends at the job's timeout with
// cause ErrTimeout, and that the run counts as a failure.
func TestTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newFakeQueue(time.Minute)
		q.addJob(t, job.Job{Name: "slow", TimeoutMS: 5000})
		res := &fakeProducer{}
		var cause error
		h := func(ctx context.Context, j *worker.Job) error {
			if j.Attempt > 1 {
				return nil
			}
			start := time.Now()
			<-ctx.Done()
			if d := time.Since(start); d != 5*time.Second {
				t.Errorf("context ended after %v, want the job's 5s", d)
			}
			cause = context.Cause(ctx)
			return cause
		}
		stop := startWorker(t, q, h, worker.Options{Results: res, ResultsTopic: "results"})
		q.waitSettled(t, t.Context())
		stopWorker(t, stop)

		if !errors.Is(cause, worker.ErrTimeout) {
			t.Errorf("cause %v, want ErrTimeout", cause)
		}
		rs := res.results(t)
		if diff := cmp.Diff([]string{"retry", "success"}, outcomes(rs)); diff != "" {
			t.Fatalf("outcomes (-want +got):\n%s", diff)
		}
		if !strings.Contains(rs[0].Error, "timed out after 5s") || rs[0].DurationMS != 5000 {
			t.Errorf("result %+v, want a 5s run that timed out", rs[0])
		}
	})
}

// TestLeaseExtended checks that a run longer than the visibility timeout
// keeps its lease: it is extended, never delivered twice, and acked.
func TestLeaseExtended(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newFakeQueue(10 * time.Second)
		q.addJob(t, job.Job{Name: "long"})
		var runs atomic.Int32
		h := func(ctx context.Context, j *worker.Job) error {
			runs.Add(1)
			time.Sleep(35 * time.Second) // the job's work
			return nil
		}
		stop := startWorker(t, q, h, worker.Options{Visibility: 10 * time.Second})
		q.waitSettled(t, t.Context())
		stopWorker(t, stop)

		if n := runs.Load(); n != 1 {
			t.Errorf("%d runs, want 1", n)
		}
		// Extended every 5s (half the visibility) from the start: 6 or 7
		// times in 35s, depending on which runs first at 35s.
		calls := q.callList()
		if n := strings.Count(calls, "extend 0"); n < 6 || !strings.HasSuffix(calls, "ack 0") {
			t.Errorf("calls = %q, want at least 6 extends and then an ack", calls)
		}
	})
}

// visibilityQueue is a fake queue that says its visibility, as
// client.Queue does.
type visibilityQueue struct{ *fakeQueue }

func (q visibilityQueue) Visibility() time.Duration { return q.visibility }

// TestVisibilityFromQueue checks that a worker without Options.Visibility
// takes the queue's: a 35s run on a queue with a 10s visibility is
// extended every 5s, not every 15s as with DefaultVisibility.
func TestVisibilityFromQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newFakeQueue(10 * time.Second)
		q.addJob(t, job.Job{Name: "long"})
		h := func(ctx context.Context, j *worker.Job) error {
			time.Sleep(35 * time.Second) // the job's work
			return nil
		}
		stop := startWorker(t, visibilityQueue{q}, h, worker.Options{})
		q.waitSettled(t, t.Context())
		stopWorker(t, stop)
		calls := q.callList()
		if n := strings.Count(calls, "extend 0"); n < 6 || !strings.HasSuffix(calls, "ack 0") {
			t.Errorf("calls = %q, want at least 6 extends and then an ack", calls)
		}
	})
}

// TestLeaseLost checks that a run whose lease the queue took back is
// stopped (cause ErrLeaseLost) and not settled.
func TestLeaseLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newFakeQueue(10 * time.Second)
		q.loseLeases = true
		q.addJob(t, job.Job{Name: "long"})
		reg := prometheus.NewRegistry()
		var cause error
		h := func(ctx context.Context, j *worker.Job) error {
			if j.Attempt > 1 {
				return nil
			}
			<-ctx.Done()
			cause = context.Cause(ctx)
			q.mu.Lock()
			q.loseLeases = false
			q.mu.Unlock()
			return cause
		}
		stop := startWorker(t, q, h, worker.Options{Visibility: 10 * time.Second, Registerer: reg})
		q.waitSettled(t, t.Context())
		stopWorker(t, stop)

		if !errors.Is(cause, worker.ErrLeaseLost) {
			t.Errorf("cause %v, want ErrLeaseLost", cause)
		}
		if got := q.callList(); got != "extend 0 / ack 0" {
			t.Errorf("calls = %q, want the extend that lost the lease, then the second delivery's ack", got)
		}
		if n := counter(t, reg, "runnel_jobs_total", "lease_lost"); n != 1 {
			t.Errorf("lease_lost outcomes = %v, want 1", n)
		}
	})
}

// TestDrain checks a drain: leasing stops, a job that finishes within the
// drain timeout is acked, one that does not is stopped (cause ErrShutdown)
// and left leased for the queue's Close to release.
func TestDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newFakeQueue(time.Minute)
		q.addJob(t, job.Job{Name: "quick"})
		q.addJob(t, job.Job{Name: "stuck"})
		q.addJob(t, job.Job{Name: "never"})
		var cause error
		h := func(ctx context.Context, j *worker.Job) error {
			switch j.Name {
			case "quick":
				time.Sleep(5 * time.Second)
				return nil
			case "stuck":
				<-ctx.Done()
				cause = context.Cause(ctx)
				return cause
			}
			t.Errorf("job %s ran after the drain began", j.Name)
			return nil
		}
		stop := startWorker(t, q, h, worker.Options{Concurrency: 2, DrainTimeout: 10 * time.Second})
		synctest.Wait() // both slots taken
		start := time.Now()
		stopWorker(t, stop)

		if d := time.Since(start); d != 10*time.Second {
			t.Errorf("drain took %v, want the drain timeout, 10s", d)
		}
		if !errors.Is(cause, worker.ErrShutdown) {
			t.Errorf("cause %v, want ErrShutdown", cause)
		}
		if got := q.callList(); got != "ack 0" {
			t.Errorf("calls = %q, want the quick job acked and the stuck one left leased", got)
		}
		if r := q.recs[1]; r.settled || !r.leased {
			t.Errorf("stuck job settled %v leased %v, want it leased and unsettled", r.settled, r.leased)
		}
		if n := q.recs[2].deliveries; n != 0 {
			t.Errorf("third job delivered %d times, want 0: leasing goes on during a drain", n)
		}
	})
}

// TestStaleDelivery checks that a delivery whose lease ended while it
// waited (and went to another consumer) is not run, and that one with
// little lease left is extended before it runs.
func TestStaleDelivery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newFakeQueue(10 * time.Second)
		q.addJob(t, job.Job{Name: "j"})
		var attempts []int
		h := func(ctx context.Context, j *worker.Job) error {
			attempts = append(attempts, j.Attempt)
			return nil
		}
		stop := startWorker(t, staleQueue{q}, h, worker.Options{Visibility: 10 * time.Second})
		q.waitSettled(t, t.Context())
		stopWorker(t, stop)

		// Attempt 1 was stolen, attempt 2 is another consumer's lease that
		// expires, attempt 3 runs after an extend.
		if diff := cmp.Diff([]int{3}, attempts); diff != "" {
			t.Errorf("attempts run (-want +got):\n%s", diff)
		}
		if got := q.callList(); got != "extend 0 / extend 0 / ack 0" {
			t.Errorf("calls = %q, want the extend that found the lease lost, the one that kept it, then the ack", got)
		}
	})
}

// staleQueue hands out deliveries with 1s of lease left; the first one
// it also gives, meanwhile, to another consumer.
type staleQueue struct{ *fakeQueue }

func (s staleQueue) Next(ctx context.Context) (*worker.Delivery, error) {
	d, err := s.fakeQueue.Next(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d.LeaseUntil = time.Now().Add(time.Second)
	if d.Attempt == 1 {
		r := s.recs[d.Offset]
		r.deliveries++
		r.leaseUntil = time.Now().Add(s.visibility)
	}
	return d, nil
}

// TestConcurrency checks that no more than Concurrency jobs run at once.
func TestConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newFakeQueue(time.Minute)
		for range 10 {
			q.addJob(t, job.Job{Name: "j"})
		}
		var running, peak atomic.Int32
		release := make(chan struct{})
		h := func(ctx context.Context, j *worker.Job) error {
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			<-release
			running.Add(-1)
			return nil
		}
		stop := startWorker(t, q, h, worker.Options{Concurrency: 3})
		synctest.Wait()
		if n := running.Load(); n != 3 {
			t.Errorf("%d jobs running, want 3", n)
		}
		close(release)
		q.waitSettled(t, t.Context())
		stopWorker(t, stop)
		if p := peak.Load(); p != 3 {
			t.Errorf("at most %d jobs ran at once, want 3", p)
		}
	})
}

// TestMetrics checks the worker's metrics: runtime, dequeue age,
// outcomes and in flight, labelled by queue.
func TestMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newFakeQueue(time.Minute)
		q.addJob(t, job.Job{Name: "a"})
		q.addJob(t, job.Job{Name: "b"})
		time.Sleep(3 * time.Second) // the jobs wait 3s in the queue
		reg := prometheus.NewRegistry()
		var inFlight float64
		h := func(ctx context.Context, j *worker.Job) error {
			time.Sleep(2 * time.Second)
			if j.Name == "b" {
				inFlight = gauge(t, reg, "runnel_jobs_in_flight")
				if j.Attempt == 1 {
					return errors.New("again")
				}
			}
			return nil
		}
		stop := startWorker(t, q, h, worker.Options{Concurrency: 1, Registerer: reg,
			Backoff: func(int) time.Duration { return time.Second }})
		q.waitSettled(t, t.Context())
		stopWorker(t, stop)

		if inFlight != 1 {
			t.Errorf("in flight during a run = %v, want 1", inFlight)
		}
		if n := gauge(t, reg, "runnel_jobs_in_flight"); n != 0 {
			t.Errorf("in flight after = %v, want 0", n)
		}
		if n := counter(t, reg, "runnel_jobs_total", "success"); n != 2 {
			t.Errorf("success outcomes = %v, want 2", n)
		}
		if n := counter(t, reg, "runnel_jobs_total", "retry"); n != 1 {
			t.Errorf("retry outcomes = %v, want 1", n)
		}
		if count, sum := histogram(t, reg, "runnel_job_runtime_seconds"); count != 3 || sum != 6 {
			t.Errorf("runtime count %d sum %v, want 3 runs of 2s", count, sum)
		}
		// First attempts only: a waited 3s, b 3s + a's 2s run.
		if count, sum := histogram(t, reg, "runnel_job_dequeue_age_seconds"); count != 2 || sum != 3+5 {
			t.Errorf("dequeue age count %d sum %v, want 2 first attempts, 3s and 5s", count, sum)
		}
	})
}

// metric returns the one metric of family name with queue "jobs" and, if
// outcome is not empty, that outcome.
func metric(t *testing.T, reg *prometheus.Registry, name, outcome string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				switch {
				case l.GetName() == "queue" && l.GetValue() != "jobs",
					l.GetName() == "outcome" && l.GetValue() != outcome:
					continue metrics
				}
			}
			return m
		}
	}
	return nil
}

func counter(t *testing.T, reg *prometheus.Registry, name, outcome string) float64 {
	t.Helper()
	return metric(t, reg, name, outcome).GetCounter().GetValue()
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	return metric(t, reg, name, "").GetGauge().GetValue()
}

func histogram(t *testing.T, reg *prometheus.Registry, name string) (uint64, float64) {
	t.Helper()
	h := metric(t, reg, name, "").GetHistogram()
	return h.GetSampleCount(), h.GetSampleSum()
}
