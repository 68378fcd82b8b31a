// Package worker runs jobs from a queue group: it leases records with a
// Queue (client.Queue), runs a Handler on each, and settles the record by
// what the handler returned.
//
//	w, err := worker.New(q, func(ctx context.Context, j *worker.Job) error {
//		return send(ctx, j.Payload)
//	}, worker.Options{Concurrency: 8})
//	...
//	err = w.Run(ctx) // until ctx ends, then drains
//
// # Outcomes
//
// A run's outcome follows from the handler's error:
//
//   - nil: success; the record is acked.
//   - RetryAfter(d, err): the record is nacked with delay d.
//   - Permanent(err): the job is dead-lettered at once (result outcome
//     "failed").
//   - any other error, a panic, or the job's timeout: the record is nacked
//     with the Backoff's delay for this attempt (exponential with jitter by
//     default), or, on the job's last attempt, dead-lettered (outcome
//     "dead").
//
// A job's attempt is its delivery count in the queue group (plus the
// attempt it was published with, minus one). A delivery whose attempt is
// already past the job's max attempts — its earlier runs never finished,
// as when the job crashes its worker — is dead-lettered without running.
//
// A dead letter goes through Queue.Reject; its value is a job.DeadLetter
// as JSON: the job as published, the reason, the exit code, the number of
// attempts, the end of the output, and where the record was. With
// Options.Results, every run also writes a job.Result (keyed by job ID) to
// the results topic, so a caller can learn the outcome; a run stopped by a
// lost lease or a drain reports "retry", as the job runs again. Run
// creates the results topic when it does not exist and Results can create
// topics, as a *client.Client can.
//
// # Records that are not jobs
//
// A record whose value does not decode as a job (package job) still runs:
// its Job has DecodeError set, an empty Name and Command, the record's value
// as Payload and "<topic>/<partition>/<offset>" as ID; the worker's
// defaults give its max attempts and timeout. So a plain topic can feed a
// Go handler. Exec fails such a record permanently, as it has no command.
// In a dead letter a payload that is not JSON becomes a JSON string; the
// original stays in the log at the dead letter's topic, partition and
// offset.
//
// # Leases, timeouts and drains
//
// A run holds its record's lease: once less than half of
// Options.Visibility is left, the worker extends it by Visibility. If the
// queue answers that the lease is lost, the run's context ends with cause
// ErrLeaseLost and the record is not settled (someone else has it). A run's
// context ends at the job's timeout with cause ErrTimeout.
//
// The queue's Prefetch is best set to Concurrency (what runnel worker
// does): a record leased ahead for each running job, ready when it ends.
// More helps many short jobs; a record leased ahead and never run when
// the queue closes is released without a delivery counted, but it waits
// leased, its visibility running, until a job takes it.
//
// A delivery that waited in the queue's prefetch buffer until less than
// half of Visibility is left has its lease extended before the job starts;
// if the lease is lost already the job is not run here. (*client.Queue
// itself skips deliveries whose lease ended in its prefetch buffer.)
//
// When Run's context ends the worker stops asking for records, lets
// running jobs finish for up to DrainTimeout, then ends their contexts
// with cause ErrShutdown. Those it leaves unsettled: the owner closes the
// queue after Run returns, which releases them to run again elsewhere
// (without Close, they come back when their lease ends). A Nack would let
// the queue, still leasing until Close, hand the record straight back to
// this worker and count a delivery that never runs. Acks, nacks, rejects
// and results of a drain use a context of their own, bounded by 30s.
//
// # Commands
//
// Exec is a Handler that runs a job's command with sh -c in a process
// group of its own and kills the group on timeout; see Exec.
//
// # Metrics
//
// With Options.Registerer, labelled by queue (the record's topic):
//
//	runnel_job_runtime_seconds{queue}        histogram of run durations
//	runnel_job_dequeue_age_seconds{queue}    histogram of the wait from due to the first attempt's start
//	runnel_jobs_total{queue,outcome}         runs by outcome: success, retry, failed, dead, lease_lost, interrupted
//	runnel_jobs_in_flight{queue}             runs going on now
//
// A job is due at the latest of its record's timestamp, its scheduled time
// and its deliver-at header. Retries are left out of the dequeue age, whose
// wait includes the backoff.
//
// # Concurrency
//
// Run starts one goroutine per running job (at most Concurrency), plus
// one per run to keep its lease, and returns only after all of them have
// ended. A Handler runs on many goroutines at once; the *Job it gets is its
// own.
package worker
