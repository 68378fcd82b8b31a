package log

import (
	"errors"
	"fmt"

	"github.com/runnel-dev/runnel/record"
)

var (
	// ErrOffsetOutOfRange is matched by errors for an offset before the
	// log's start or after its end. The error is an *OutOfRangeError that
	// carries both bounds.
	ErrOffsetOutOfRange = errors.New("log: offset out of range")

	// ErrCorrupt is matched, wrapped with the log, the offset and what is
	// wrong, by errors for a batch that fails its checks: one handed to
	// Append, or one read back from disk. Errors that match ErrCorrupt also
	// match record.ErrCorrupt.
	ErrCorrupt error = corruptSentinel{}

	// ErrClosed is returned by every method of a Store after Close and of a
	// Log after Drop or after its Store's Close.
	ErrClosed = errors.New("log: closed")

	// ErrNoWAL is returned by Append, AppendAsync, AppendAsyncState and
	// WriteState on a store opened with Options.NoWAL, which cannot make
	// such a write durable on its own.
	ErrNoWAL = errors.New("log: the store has no write-ahead log; Append needs one")
)

// corruptSentinel is ErrCorrupt's type: a sentinel that also matches
// record.ErrCorrupt, so callers that only know the record package can still
// tell corruption from other failures.
type corruptSentinel struct{}

func (corruptSentinel) Error() string        { return "log: corrupt batch" }
func (corruptSentinel) Is(target error) bool { return target == record.ErrCorrupt }

// corruptError reports corruption in context. Its message is the context and
// the cause; it matches ErrCorrupt (hence record.ErrCorrupt) and the cause.
type corruptError struct {
	context string
	cause   error
}

func (e *corruptError) Error() string   { return e.context + ": " + e.cause.Error() }
func (e *corruptError) Unwrap() []error { return []error{ErrCorrupt, e.cause} }

// corruptf returns an error matching ErrCorrupt, as
// "log 3/0: offset 42: <cause>".
func corruptf(id ID, where string, cause error) error {
	ctx := fmt.Sprintf("log %s: %s", id, where)
	if !errors.Is(cause, record.ErrCorrupt) {
		ctx += ": corrupt"
	}
	return &corruptError{context: ctx, cause: cause}
}

// OutOfRangeError is returned for an offset outside [Start, End] of a log.
// It matches ErrOffsetOutOfRange.
type OutOfRangeError struct {
	Offset     int64
	Start, End int64
}

func (e *OutOfRangeError) Error() string {
	return fmt.Sprintf("log: offset %d out of range [%d, %d]", e.Offset, e.Start, e.End)
}

// Is reports whether target is ErrOffsetOutOfRange.
func (e *OutOfRangeError) Is(target error) bool { return target == ErrOffsetOutOfRange }
