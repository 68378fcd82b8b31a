package worker

import (
	"errors"
	"fmt"
	"time"
)

// Sentinels that end a job's context; context.Cause tells a handler which
// one it was.
var (
	// ErrTimeout: the run took longer than the job's timeout.
	ErrTimeout = errors.New("worker: job timed out")
	// ErrLeaseLost: the queue took the lease back (it expired and the record
	// moved on); another worker may run the job, so this run stops.
	ErrLeaseLost = errors.New("worker: lease lost")
	// ErrShutdown: the worker was draining and DrainTimeout passed before
	// the run ended; the job goes back to the queue to run again.
	ErrShutdown = errors.New("worker: shutting down")
)

// RetryAfterError is a failure after which the job runs again no sooner
// than Delay, instead of after the worker's backoff. A handler returns one
// with RetryAfter. It is a failed attempt all the same: after the last
// attempt the job is dead-lettered.
type RetryAfterError struct {
	Delay time.Duration
	Err   error
}

// RetryAfter returns an error that makes the job run again after d (the
// worker's backoff is not used for this attempt). err says why; it may be
// nil.
func RetryAfter(d time.Duration, err error) error {
	if d < 0 {
		d = 0
	}
	return &RetryAfterError{Delay: d, Err: err}
}

func (e *RetryAfterError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("retry after %v", e.Delay)
	}
	return fmt.Sprintf("retry after %v: %v", e.Delay, e.Err)
}

func (e *RetryAfterError) Unwrap() error { return e.Err }

// PermanentError is a failure that retrying cannot fix: the job is
// dead-lettered at once, whatever attempts it has left. A handler returns one
// with Permanent.
type PermanentError struct {
	Err error
}

// Permanent marks err as a failure not worth retrying. A nil err still
// makes a permanent failure.
func Permanent(err error) error {
	return &PermanentError{Err: err}
}

func (e *PermanentError) Error() string {
	if e.Err == nil {
		return "permanent failure"
	}
	return "permanent failure: " + e.Err.Error()
}

func (e *PermanentError) Unwrap() error { return e.Err }

// ExitError is the failure of a command run by Exec: it exited with a code
// other than 0 or was killed. Code is the exit status, or 128 plus the
// signal number for a command ended by a signal, as a shell reports it.
type ExitError struct {
	Code int
	// Signal names the signal that ended the command ("killed",
	// "terminated"), or is empty.
	Signal string
}

func (e *ExitError) Error() string {
	if e.Signal != "" {
		return fmt.Sprintf("command ended by signal: %s (exit code %d)", e.Signal, e.Code)
	}
	return fmt.Sprintf("command exited with code %d", e.Code)
}
