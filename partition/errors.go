package partition

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrBacklogFull is returned when a partition already holds as many
	// pending (accepted but not yet durable) bytes as it may.
	ErrBacklogFull = errors.New("partition: too many pending bytes")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("partition: closed")
)

// BacklogError says how far over its pending-bytes bound a partition is and
// when to try again. It matches ErrBacklogFull.
type BacklogError struct {
	Pending    int64
	Limit      int64
	RetryAfter time.Duration
}

func (e *BacklogError) Error() string {
	return fmt.Sprintf("partition has %d pending bytes, limit %d; retry after %s", e.Pending, e.Limit, e.RetryAfter)
}

// Is reports whether target is ErrBacklogFull.
func (e *BacklogError) Is(target error) bool { return target == ErrBacklogFull }
