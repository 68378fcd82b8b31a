package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/client/job"
)

// Handler runs one job. It returns nil on success, a RetryAfter error to
// run the job again after a given delay, a Permanent error to dead-letter
// it at once, and any other error to run it again after the worker's
// backoff (or dead-letter it after its last attempt). ctx ends at the job's
// timeout (cause ErrTimeout), when the lease is lost (ErrLeaseLost) and
// when a drain runs out of time (ErrShutdown); a handler should return
// soon after.
type Handler func(ctx context.Context, j *Job) error

// Worker takes jobs from a queue and runs them with a Handler.
type Worker struct {
	q       Queue
	h       Handler
	opts    Options
	met     *metrics
	running atomic.Bool
}

// New returns a worker that runs h on the records of q. It does not start
// it; see Run.
func New(q Queue, h Handler, opts Options) (*Worker, error) {
	if q == nil || h == nil {
		return nil, errors.New("worker: New needs a queue and a handler")
	}
	if vq, ok := q.(visibilityQueue); ok && opts.Visibility == 0 {
		opts.Visibility = vq.Visibility()
	}
	if err := opts.ensureDefaults(); err != nil {
		return nil, err
	}
	met, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("worker: register metrics: %w", err)
	}
	return &Worker{q: q, h: h, opts: opts, met: met}, nil
}

// Run leases records from the queue and runs up to Concurrency jobs at
// once until ctx ends. Then it stops leasing, lets running jobs finish for
// up to DrainTimeout, ends the contexts of those still running (cause
// ErrShutdown) and waits for their handlers to return; those stopped stay
// leased until the queue is closed (see the package doc). It
// returns nil after a drain started by ctx, or the queue's error (after the
// same drain) when leasing fails for a reason retrying cannot fix. It
// fails at start when the results topic cannot be created (see
// Options.Results). Run can be called once.
func (w *Worker) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("worker: Run called twice")
	}
	if err := w.ensureResults(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	// Jobs run on past ctx, until the drain's deadline cancels hard.
	hard, cancelHard := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelHard(nil)
	var (
		wg    sync.WaitGroup
		slots = make(chan struct{}, w.opts.Concurrency)
		err   error
		fails int
	)
	for err == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		var d *Delivery
		d, err = w.q.Next(ctx)
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				err = nil
				break
			}
			if retriable(err) {
				fails++
				w.opts.Logger.Warn("worker: lease a record; trying again", "err", err, "failures", fails)
				err = sleep(ctx, w.opts.Backoff(fails))
				if ctx.Err() != nil {
					err = nil
				}
				continue
			}
			err = fmt.Errorf("worker: lease a record: %w", err)
			break
		}
		fails = 0
		wg.Go(func() {
			defer func() { <-slots }()
			w.process(hard, d)
		})
	}
	w.drain(&wg, cancelHard)
	return err
}

// ensureResults creates the results topic unless it exists, when Results
// can create topics, and waits until Results knows it: a worker that
// started with another one may find the topic just created by it, and not
// known yet to the node it asks.
func (w *Worker) ensureResults(ctx context.Context) error {
	te, ok := w.opts.Results.(topicEnsurer)
	if !ok {
		return nil
	}
	if _, err := te.EnsureTopic(ctx, w.opts.ResultsTopic, 0, 0); err != nil {
		return fmt.Errorf("worker: results topic %s: %w", w.opts.ResultsTopic, err)
	}
	return nil
}

// drain waits for running jobs, for at most DrainTimeout before it ends
// their contexts.
func (w *Worker) drain(wg *sync.WaitGroup, cancelHard context.CancelCauseFunc) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(w.opts.DrainTimeout)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	w.opts.Logger.Warn("worker: drain timeout passed; stopping the jobs still running", "drain_timeout", w.opts.DrainTimeout)
	cancelHard(ErrShutdown)
	<-done
}

// retriable reports whether a failure to lease can pass by itself.
func retriable(err error) bool {
	return errors.Is(err, client.ErrUnavailable) || errors.Is(err, client.ErrResourceExhausted) ||
		errors.Is(err, client.ErrNotLeader) || errors.Is(err, client.ErrStaleGeneration)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run is the record of one run, for its result and dead letter.
type run struct {
	outcome  string // a job.Outcome* or outcomeLeaseLost, outcomeInterrupted
	errText  string
	reason   string // for a dead letter
	delay    time.Duration
	duration time.Duration
}

// process runs the job of d (or dead-letters it unrun when it has no
// attempts left) and settles d.
func (w *Worker) process(hard context.Context, d *Delivery) {
	queue := d.Topic
	j := newJob(d, &w.opts)
	if j.Attempt > j.MaxAttempts {
		r := run{
			outcome: job.OutcomeDead,
			reason: fmt.Sprintf("attempt %d of a job allowed %d attempts: the earlier runs did not finish "+
				"(a worker stopped or lost the lease mid-run), so it is not run again", j.Attempt, j.MaxAttempts),
		}
		r.errText = r.reason
		w.finish(hard, j, r, j.Attempt-1)
		return
	}

	if !w.holdsLease(hard, d) {
		w.opts.Logger.Warn("worker: lease ended before the job started; another worker has it",
			"job", j.ID, "topic", d.Topic, "partition", d.Partition, "offset", d.Offset)
		w.met.outcomes.WithLabelValues(queue, outcomeLeaseLost).Inc()
		return
	}

	start := time.Now()
	if j.Attempt == 1 {
		w.met.age.WithLabelValues(queue).Observe(max(start.Sub(j.due), 0).Seconds())
	}
	inFlight := w.met.inFlight.WithLabelValues(queue)
	inFlight.Inc()
	err, cause := w.call(hard, j)
	inFlight.Dec()
	r := run{duration: time.Since(start)}
	w.met.runtime.WithLabelValues(queue).Observe(r.duration.Seconds())

	var perm *PermanentError
	switch {
	case err == nil:
		r.outcome = job.OutcomeSuccess
	case errors.Is(cause, ErrLeaseLost):
		r.outcome, r.errText = outcomeLeaseLost, fmt.Sprintf("lease lost mid-run: %v", err)
	case errors.Is(cause, ErrShutdown):
		r.outcome, r.errText = outcomeInterrupted, fmt.Sprintf("interrupted by the worker shutting down: %v", err)
	default:
		r.errText = err.Error()
		if errors.Is(cause, ErrTimeout) {
			r.errText = fmt.Sprintf("timed out after %v: %v", time.Duration(j.TimeoutMS)*time.Millisecond, err)
		}
		var ra *RetryAfterError
		switch {
		case errors.As(err, &perm):
			r.outcome = job.OutcomeFailed
			r.reason = fmt.Sprintf("permanent failure on attempt %d: %s", j.Attempt, r.errText)
		case j.Attempt >= j.MaxAttempts:
			r.outcome = job.OutcomeDead
			r.reason = fmt.Sprintf("attempt %d of %d failed: %s", j.Attempt, j.MaxAttempts, r.errText)
		case errors.As(err, &ra):
			r.outcome, r.delay = job.OutcomeRetry, min(ra.Delay, maxNackDelay)
		default:
			r.outcome, r.delay = job.OutcomeRetry, min(w.opts.Backoff(j.Attempt), maxNackDelay)
		}
	}
	if j.ExitCode == nil {
		var ee *ExitError
		if errors.As(err, &ee) {
			j.ExitCode = &ee.Code
		}
	}
	w.finish(hard, j, r, j.Attempt)
}

// call runs the handler under the job's timeout and lease, and returns its
// error and, when the job's context ended, why.
func (w *Worker) call(hard context.Context, j *Job) (err error, cause error) {
	ctx, cancel := context.WithCancelCause(hard)
	defer cancel(nil)
	stop := w.keepLease(ctx, j.d, cancel)
	tctx, tcancel := context.WithTimeoutCause(ctx, time.Duration(j.TimeoutMS)*time.Millisecond, ErrTimeout)
	defer tcancel()
	func() {
		defer func() {
			if p := recover(); p != nil {
				w.opts.Logger.Error("worker: handler panicked", "job", j.ID, "panic", p, "stack", string(debug.Stack()))
				err = fmt.Errorf("handler panicked: %v", p)
			}
		}()
		err = w.h(tctx, j)
	}()
	stop()
	if tctx.Err() != nil {
		cause = context.Cause(tctx)
	}
	return err, cause
}

// holdsLease makes sure d's lease has at least half of Visibility left
// before its job starts, extending it if not: a delivery can wait in the
// queue's prefetch buffer until little of its lease is left. (*client.Queue
// does not hand out one whose lease has ended, or is about to; another
// Queue may, and the extend then finds the lease lost.) It reports false
// only when the queue says the lease is lost; on other errors keepLease
// tries again as the job runs.
func (w *Worker) holdsLease(ctx context.Context, d *Delivery) bool {
	v := w.opts.Visibility
	if time.Until(d.LeaseUntil) >= v/2 {
		return true
	}
	err := w.q.Extend(ctx, d, v)
	if err == nil {
		d.LeaseUntil = time.Now().Add(v)
	}
	return !errors.Is(err, client.ErrLeaseLost)
}

// keepLease extends d's lease by Visibility whenever less than half of
// Visibility is left, until stop is called. When the queue says the lease
// is lost it ends ctx with cause ErrLeaseLost.
func (w *Worker) keepLease(ctx context.Context, d *Delivery, lost context.CancelCauseFunc) (stop func()) {
	v := w.opts.Visibility
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		until := d.LeaseUntil
		for {
			t := time.NewTimer(time.Until(until) - v/2)
			select {
			case <-done:
				t.Stop()
				return
			case <-t.C:
			}
			err := w.q.Extend(ctx, d, v)
			switch {
			case err == nil:
				until = time.Now().Add(v)
			case errors.Is(err, client.ErrLeaseLost):
				lost(ErrLeaseLost)
				return
			case ctx.Err() != nil:
				return
			default:
				w.opts.Logger.Warn("worker: extend a lease; trying again", "topic", d.Topic, "partition", d.Partition, "offset", d.Offset, "err", err)
				until = time.Now().Add(v/2 + v/10)
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// logOutputLimit is how much of the end of a failed run's output goes
// into its log line.
const logOutputLimit = 512

// finish writes the run's result, settles the delivery as r says and
// counts the outcome. attempts is how many runs of the job started.
func (w *Worker) finish(hard context.Context, j *Job, r run, attempts int) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(hard), settleTimeout)
	defer cancel()
	d := j.d
	log := w.opts.Logger.With("job", j.ID, "name", j.Name, "attempt", j.Attempt, "topic", d.Topic, "partition", d.Partition, "offset", d.Offset)
	output := tail(j.Output, OutputLimit)
	if j.Output != "" && r.outcome != job.OutcomeSuccess {
		log = log.With("output", tail(output, logOutputLimit))
	}

	if w.opts.Results != nil {
		w.writeResult(ctx, j, r, output, log)
	}
	var err error
	switch r.outcome {
	case job.OutcomeSuccess:
		log.Debug("worker: job done", "duration", r.duration)
		err = w.q.Ack(ctx, d)
	case job.OutcomeRetry:
		log.Warn("worker: job failed; it will run again", "err", r.errText, "delay", r.delay)
		err = w.q.Nack(ctx, d, r.delay)
	case outcomeInterrupted:
		// Left leased: the queue's Close releases it once leasing has
		// stopped (a Nack now could let this worker lease it again
		// before it closes, spending an attempt), else its lease ends.
		log.Warn("worker: job interrupted; it goes back to the queue", "err", r.errText)
	case outcomeLeaseLost:
		// The record is someone else's now: nothing to settle.
		log.Warn("worker: job stopped", "err", r.errText)
	case job.OutcomeFailed, job.OutcomeDead:
		log.Warn("worker: job dead-lettered", "reason", r.reason)
		err = w.q.Reject(ctx, d, w.deadLetter(j, r, output, attempts))
	}
	if err != nil {
		log.Error("worker: settle a job; it will be delivered again when its lease ends", "outcome", r.outcome, "err", err)
	}
	w.met.outcomes.WithLabelValues(d.Topic, r.outcome).Inc()
}

// writeResult produces the run's job.Result to the results topic. A
// failure is logged: the job's own outcome does not depend on it.
func (w *Worker) writeResult(ctx context.Context, j *Job, r run, output string, log *slog.Logger) {
	outcome := r.outcome
	switch outcome {
	case outcomeLeaseLost, outcomeInterrupted:
		outcome = job.OutcomeRetry
	}
	res := job.Result{
		ID:         j.ID,
		Name:       j.Name,
		Attempt:    j.Attempt,
		Outcome:    outcome,
		ExitCode:   j.ExitCode,
		DurationMS: r.duration.Milliseconds(),
		Output:     output,
		Error:      r.errText,
		FinishedAt: time.Now().UTC(),
	}
	v, err := res.Encode()
	if err == nil {
		err = w.opts.Results.ProduceSync(ctx, &client.Record{Topic: w.opts.ResultsTopic, Key: []byte(j.ID), Value: v})
	}
	if err != nil {
		log.Error("worker: write a result", "results_topic", w.opts.ResultsTopic, "err", err)
	}
}

// deadLetter returns what Reject writes for j: a job.DeadLetter as JSON.
func (w *Worker) deadLetter(j *Job, r run, output string, attempts int) client.DeadLetter {
	d := j.d
	dl := job.DeadLetter{
		Job:       j.deadLetterJob(max(attempts, 1)),
		Reason:    r.reason,
		ExitCode:  j.ExitCode,
		Attempts:  attempts,
		Output:    output,
		Topic:     d.Topic,
		Partition: d.Partition,
		Offset:    d.Offset,
		At:        time.Now().UTC(),
	}
	v, err := dl.Encode()
	if err != nil {
		// Only a payload that is not JSON can fail, and deadLetterJob
		// quoted it; keep the original value rather than lose the reason.
		v = nil
	}
	return client.DeadLetter{Reason: r.reason, Value: v}
}
