package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// This is the one file of the client that knows gRPC status codes: it turns
// the broker's statuses (broker/status.go) into the Go errors below.

// Sentinels for the kinds of failure the broker reports. Every error the
// client returns for a broker answer matches exactly one of them with
// errors.Is (ErrUnknownOutcome matches ErrUnavailable too).
var (
	// ErrNotFound: the topic or partition does not exist.
	ErrNotFound = errors.New("client: not found")
	// ErrAlreadyExists: the topic exists.
	ErrAlreadyExists = errors.New("client: already exists")
	// ErrInvalidArgument: a bad name, config, partition count, a record or
	// batch too large, or a corrupt batch. Retrying does not help.
	ErrInvalidArgument = errors.New("client: invalid argument")
	// ErrOffsetOutOfRange: the offset is before the start or after the end of
	// the partition. Use errors.As with *OffsetOutOfRangeError for the bounds.
	ErrOffsetOutOfRange = errors.New("client: offset out of range")
	// ErrNotLeader: the node asked does not lead the partition. The client
	// follows the leader hint by itself; errors.As with *NotLeaderError gives
	// the hint.
	ErrNotLeader = errors.New("client: not the leader")
	// ErrUnavailable: no leader yet, the node is shutting down, or the broker
	// cannot be reached. Retriable.
	ErrUnavailable = errors.New("client: unavailable")
	// ErrResourceExhausted: the broker is over one of its bounds. Retriable
	// after Error.RetryAfter.
	ErrResourceExhausted = errors.New("client: resource exhausted")
	// ErrStaleGeneration: a consumer group generation has moved on.
	ErrStaleGeneration = errors.New("client: stale generation")
	// ErrUnknownOutcome: the broker cannot tell whether a write happened
	// (leadership was lost mid-write, a deadline passed). Retriable: the
	// producer's retry carries the same producer id and sequence numbers, so
	// the partition writes the batch once.
	ErrUnknownOutcome = errors.New("client: outcome unknown")
	// ErrOutOfOrderSequence: a batch of the idempotent producer does not
	// follow the last one the partition has from it, as when an earlier
	// batch was lost. Definite (not written) and retriable: the producer
	// sends the batches before it first.
	ErrOutOfOrderSequence = errors.New("client: out of order sequence number")
	// ErrDuplicateSequence: the partition wrote the batch before, longer ago
	// than it remembers the offset of. Not written again; the producer counts
	// the records as acknowledged, with Offset -1.
	ErrDuplicateSequence = errors.New("client: duplicate sequence number")
	// ErrProducerFenced: a newer instance of the producer (a higher epoch of
	// the same producer id) has written to the partition. Definite (not
	// written) and final.
	ErrProducerFenced = errors.New("client: producer fenced")
	// ErrInternal: the broker failed in a way it did not classify.
	ErrInternal = errors.New("client: internal broker error")
	// ErrClosed is returned for calls on a closed client and for records
	// still buffered when Close gave up on them.
	ErrClosed = errors.New("client: closed")
)

// Error is a failure reported by the broker. Kind is one of the sentinels
// above; errors.Is(err, Kind) holds.
type Error struct {
	// Kind is the sentinel this error matches.
	Kind error
	// Reason is the broker's machine-readable reason, such as
	// TOPIC_NOT_FOUND or BATCH_TOO_LARGE.
	Reason string
	// Message is the broker's sentence, written for a person to act on.
	Message string
	// Metadata holds details such as "topic", "partition", "limit".
	Metadata map[string]string
	// RetryAfter is how long the broker asks the client to wait before
	// retrying; zero when it did not say.
	RetryAfter time.Duration
}

// Error returns the broker's message.
func (e *Error) Error() string {
	if e.Message != "" {
		return e.Message
	}
	if e.Reason != "" {
		return e.Kind.Error() + ": " + e.Reason
	}
	return e.Kind.Error()
}

// Is reports whether target is e's kind.
func (e *Error) Is(target error) bool {
	return target == e.Kind || (e.Kind == ErrUnknownOutcome && target == ErrUnavailable)
}

// OffsetOutOfRangeError is returned for a read or a lookup at an offset
// outside the partition's log. It matches ErrOffsetOutOfRange.
type OffsetOutOfRangeError struct {
	Topic     string
	Partition int32
	// Offset is the offset asked for.
	Offset int64
	// Start is the first offset still in the log; End the offset the next
	// record will get.
	Start, End int64
	// Err is the broker's error.
	Err *Error
}

// Error returns the broker's message.
func (e *OffsetOutOfRangeError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying *Error.
func (e *OffsetOutOfRangeError) Unwrap() error { return e.Err }

// NotLeaderError is returned when the node asked does not lead the
// partition. It matches ErrNotLeader.
type NotLeaderError struct {
	// LeaderID is the node the broker believes leads, 0 when unknown.
	LeaderID int32
	// LeaderAddr is that node's address, "" when unknown.
	LeaderAddr string
	// Err is the broker's error.
	Err *Error
}

// Error returns the broker's message.
func (e *NotLeaderError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying *Error.
func (e *NotLeaderError) Unwrap() error { return e.Err }

// ConnectError is returned when a broker cannot be reached at all. It
// matches ErrUnavailable.
type ConnectError struct {
	// Addr is the address dialled.
	Addr string
	// Err is the transport's error.
	Err error
}

// Error says which address could not be reached and why.
func (e *ConnectError) Error() string {
	return fmt.Sprintf("cannot reach broker at %s: %v", e.Addr, e.Err)
}

// Unwrap returns the transport's error.
func (e *ConnectError) Unwrap() error { return e.Err }

// Is makes a ConnectError match ErrUnavailable.
func (e *ConnectError) Is(target error) bool { return target == ErrUnavailable }

// Retriable reports whether retrying err may succeed: the broker was
// unavailable or not the leader, was over a bound, could not tell the
// outcome or got a batch out of order, or the connection failed.
func Retriable(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotLeader) ||
		errors.Is(err, ErrResourceExhausted) || errors.Is(err, ErrUnknownOutcome) ||
		errors.Is(err, ErrOutOfOrderSequence)
}

// retryLater reports whether err is a broker's answer that it cannot serve
// yet but should soon: no leader (of the controller or a partition) yet,
// the node is catching up after a start, or it is shutting down and
// another node can answer.
func retryLater(err error) bool {
	var e *Error
	if !errors.As(err, &e) || e.Kind != ErrUnavailable {
		return false
	}
	switch e.Reason {
	case "NO_LEADER", "CATCHING_UP", "SHUTTING_DOWN":
		return true
	}
	return false
}

// retryAfter returns the delay the broker asked for, or 0.
func retryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// kindOf maps a status code, and the ErrorInfo reason where one code
// covers several failures, to its sentinel.
func kindOf(c codes.Code, reason string) error {
	switch c {
	case codes.NotFound:
		return ErrNotFound
	case codes.AlreadyExists:
		if reason == "DUPLICATE_SEQUENCE" {
			return ErrDuplicateSequence
		}
		return ErrAlreadyExists
	case codes.InvalidArgument:
		return ErrInvalidArgument
	case codes.OutOfRange:
		return ErrOffsetOutOfRange
	case codes.FailedPrecondition:
		switch reason {
		case "OUT_OF_ORDER_SEQUENCE":
			return ErrOutOfOrderSequence
		case "PRODUCER_FENCED":
			return ErrProducerFenced
		case "GROUP_ACTIVE":
			return ErrGroupActive
		}
		return ErrNotLeader
	case codes.Unavailable:
		if reason == "OUTCOME_UNKNOWN" {
			return ErrUnknownOutcome
		}
		return ErrUnavailable
	case codes.ResourceExhausted:
		return ErrResourceExhausted
	case codes.Aborted:
		return ErrStaleGeneration
	default:
		return ErrInternal
	}
}

// newError builds the typed error for one broker failure.
func newError(c codes.Code, msg, reason string, md map[string]string, after time.Duration) error {
	e := &Error{Kind: kindOf(c, reason), Reason: reason, Message: msg, Metadata: md, RetryAfter: after}
	switch c {
	case codes.OutOfRange:
		return &OffsetOutOfRangeError{
			Topic:     md["topic"],
			Partition: int32(atoi(md["partition"])),
			Offset:    atoi(md["offset"]),
			Start:     atoi(md["start_offset"]),
			End:       atoi(md["end_offset"]),
			Err:       e,
		}
	case codes.FailedPrecondition:
		if e.Kind == ErrNotLeader {
			return &NotLeaderError{LeaderID: int32(atoi(md["leader_id"])), LeaderAddr: md["leader_addr"], Err: e}
		}
	}
	return e
}

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// fromStatus turns an error returned by a gRPC call to addr into a client
// error. Statuses without runnel's ErrorInfo come from the transport: an
// unreachable broker becomes a *ConnectError, a cancelled or expired call
// the matching context error.
func fromStatus(err error, addr string) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	var (
		info  *errdetails.ErrorInfo
		after time.Duration
	)
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() == errorDomain {
				info = d
			}
		case *errdetails.RetryInfo:
			after = d.GetRetryDelay().AsDuration()
		}
	}
	if info == nil {
		switch st.Code() {
		case codes.Canceled:
			return fmt.Errorf("call to %s: %w", addr, context.Canceled)
		case codes.DeadlineExceeded:
			return fmt.Errorf("call to %s: %w", addr, context.DeadlineExceeded)
		case codes.Unavailable:
			return &ConnectError{Addr: addr, Err: errors.New(st.Message())}
		case codes.ResourceExhausted:
			// Without runnel's details this is gRPC's own message size
			// limit: retrying the same message cannot help.
			return &Error{Kind: ErrInvalidArgument, Reason: "MESSAGE_TOO_LARGE",
				Message: fmt.Sprintf("broker at %s refused the message: %s", addr, st.Message())}
		case codes.Unimplemented, codes.Internal, codes.Unknown:
			return &Error{Kind: ErrInternal, Message: fmt.Sprintf("broker at %s: %s", addr, st.Message())}
		}
		return newError(st.Code(), st.Message(), "", nil, after)
	}
	return newError(st.Code(), st.Message(), info.GetReason(), info.GetMetadata(), after)
}

// fromProto turns the error of one ProduceStream response into a client
// error.
func fromProto(e *runnelpb.Error) error {
	if e == nil {
		return nil
	}
	return newError(codes.Code(e.GetCode()), e.GetMessage(), e.GetReason(), e.GetMetadata(),
		time.Duration(e.GetRetryAfterMs())*time.Millisecond)
}

// errorDomain is the ErrorInfo domain of runnel's errors.
const errorDomain = "runnel.dev"

// needsMetadata reports whether err means the client's view of leaders or
// partitions is out of date.
func needsMetadata(err error) bool {
	return errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnavailable)
}
