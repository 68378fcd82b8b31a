package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/runnel-dev/runnel/consumergroup"
	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/partition"
	"github.com/runnel-dev/runnel/proto/runnelpb"
	"github.com/runnel-dev/runnel/record"
)

// errorDomain is the ErrorInfo domain of every runnel error.
const errorDomain = "runnel.dev"

// OffsetOutOfRangeError is a read outside [Start, End] of a partition.
type OffsetOutOfRangeError struct {
	Topic      string
	Partition  int32
	Offset     int64
	Start, End int64
}

func (e *OffsetOutOfRangeError) Error() string {
	where := "before the start"
	hint := "use --from start"
	if e.Offset > e.End {
		where, hint = "after the end", "use --from end"
	}
	return fmt.Sprintf("offset %d is %s of %s/%d (start %d, end %d); %s", e.Offset, where, e.Topic, e.Partition, e.Start, e.End, hint)
}

// Is reports whether target is log.ErrOffsetOutOfRange.
func (e *OffsetOutOfRangeError) Is(target error) bool { return target == log.ErrOffsetOutOfRange }

// grpcError describes an error for the wire: code, reason, details.
type grpcError struct {
	code       codes.Code
	reason     string
	msg        string
	metadata   map[string]string
	retryAfter time.Duration
}

// describe maps a Go error from any layer to its gRPC code and details. It is
// the one place, with client/errors.go, that knows the code table in
// DESIGN.md.
func describe(err error) grpcError {
	g := grpcError{msg: err.Error()}
	var (
		tnf  *TopicNotFoundError
		pnf  *PartitionNotFoundError
		btl  *BatchTooLargeError
		oor  *OffsetOutOfRangeError
		back *partition.BacklogError
		nl   *NotLeaderError
		gnf  *GroupNotFoundError
		nc   *NotCoordinatorError
		tbf  *BacklogFullError
		dfe  *DiskFullError
	)
	switch {
	case errors.As(err, &tnf):
		g.code, g.reason, g.metadata = codes.NotFound, "TOPIC_NOT_FOUND", map[string]string{"topic": tnf.Topic}
	case errors.As(err, &pnf):
		g.code, g.reason = codes.NotFound, "PARTITION_NOT_FOUND"
		g.metadata = map[string]string{"topic": pnf.Topic, "partition": itoa(int64(pnf.Partition)), "partitions": itoa(int64(pnf.Partitions))}
	case errors.Is(err, ErrTopicExists):
		g.code, g.reason = codes.AlreadyExists, "TOPIC_EXISTS"
	case errors.Is(err, ErrInvalidTopicName):
		g.code, g.reason = codes.InvalidArgument, "INVALID_TOPIC_NAME"
	case errors.Is(err, ErrInvalidConfig):
		g.code, g.reason = codes.InvalidArgument, "INVALID_CONFIG"
	case errors.Is(err, ErrInvalidPartitions):
		g.code, g.reason = codes.InvalidArgument, "INVALID_PARTITIONS"
	case errors.As(err, &btl):
		g.code, g.reason = codes.InvalidArgument, "BATCH_TOO_LARGE"
		g.metadata = map[string]string{"topic": btl.Topic, "partition": itoa(int64(btl.Partition)), "size": itoa(int64(btl.Size)), "limit": itoa(int64(btl.Limit))}
	case errors.Is(err, record.ErrCorrupt), errors.Is(err, record.ErrUnsupported), errors.Is(err, log.ErrCorrupt):
		g.code, g.reason = codes.InvalidArgument, "CORRUPT_BATCH"
	case errors.Is(err, partition.ErrInvalidQueueRequest):
		g.code, g.reason = codes.InvalidArgument, "INVALID_QUEUE_REQUEST"
	case errors.Is(err, consumergroup.ErrQueueConfig):
		g.code, g.reason = codes.InvalidArgument, "QUEUE_CONFIG_MISMATCH"
	case errors.Is(err, partition.ErrQueueGroupNotFound):
		g.code, g.reason = codes.NotFound, "GROUP_NOT_FOUND"
	case errors.Is(err, ErrInvalidRequest):
		g.code, g.reason = codes.InvalidArgument, "INVALID_ARGUMENT"
	case errors.As(err, &oor):
		g.code, g.reason = codes.OutOfRange, "OFFSET_OUT_OF_RANGE"
		g.metadata = map[string]string{"topic": oor.Topic, "partition": itoa(int64(oor.Partition)), "offset": itoa(oor.Offset), "start_offset": itoa(oor.Start), "end_offset": itoa(oor.End)}
	case errors.As(err, &tbf):
		g.code, g.reason, g.retryAfter = codes.ResourceExhausted, "TOPIC_BACKLOG_FULL", tbf.RetryAfter
		g.metadata = map[string]string{"topic": tbf.Topic, "partition": itoa(int64(tbf.Partition)), "group": tbf.Group,
			"backlog": itoa(tbf.Backlog), "limit": itoa(tbf.Limit)}
	case errors.As(err, &dfe):
		g.code, g.reason, g.retryAfter = codes.ResourceExhausted, "DISK_FULL", dfe.RetryAfter
		g.metadata = map[string]string{"node": itoa(int64(dfe.Node)), "free_bytes": itoa(dfe.Free), "min_free_bytes": itoa(dfe.Floor)}
	case errors.As(err, &back):
		g.code, g.reason, g.retryAfter = codes.ResourceExhausted, "BACKLOG_FULL", back.RetryAfter
	case errors.As(err, &nl):
		g.code, g.reason = codes.FailedPrecondition, "NOT_LEADER"
		g.metadata = map[string]string{"topic": nl.Topic, "partition": itoa(int64(nl.Partition)), "leader_id": itoa(int64(nl.LeaderID)), "leader_addr": nl.LeaderAddr}
	case errors.As(err, &gnf):
		g.code, g.reason, g.metadata = codes.NotFound, "GROUP_NOT_FOUND", map[string]string{"group": gnf.Group}
	case errors.Is(err, ErrStaleGeneration):
		g.code, g.reason = codes.Aborted, "STALE_GENERATION"
	case errors.Is(err, ErrGroupActive):
		g.code, g.reason = codes.FailedPrecondition, "GROUP_ACTIVE"
	case errors.As(err, &nc):
		if nc.LeaderID == 0 {
			g.code, g.reason = codes.Unavailable, "NO_LEADER"
		} else {
			g.code, g.reason = codes.FailedPrecondition, "NOT_COORDINATOR"
			g.metadata = map[string]string{"leader_id": itoa(int64(nc.LeaderID)), "leader_addr": nc.LeaderAddr}
		}
	case errors.Is(err, partition.ErrOutOfOrderSequence):
		g.code, g.reason = codes.FailedPrecondition, "OUT_OF_ORDER_SEQUENCE"
	case errors.Is(err, partition.ErrProducerFenced):
		g.code, g.reason = codes.FailedPrecondition, "PRODUCER_FENCED"
	case errors.Is(err, partition.ErrDuplicateSequence):
		g.code, g.reason = codes.AlreadyExists, "DUPLICATE_SEQUENCE"
	case errors.Is(err, ErrOutcomeUnknown), errors.Is(err, partition.ErrOutcomeUnknown), errors.Is(err, partition.ErrReplicaFailed):
		g.code, g.reason = codes.Unavailable, "OUTCOME_UNKNOWN"
	case errors.Is(err, ErrCatchingUp):
		g.code, g.reason = codes.Unavailable, "CATCHING_UP"
	case errors.Is(err, ErrNoLeader):
		g.code, g.reason = codes.Unavailable, "NO_LEADER"
	case errors.Is(err, ErrShuttingDown), errors.Is(err, log.ErrClosed), errors.Is(err, partition.ErrClosed):
		g.code, g.reason = codes.Unavailable, "SHUTTING_DOWN"
	case errors.Is(err, context.DeadlineExceeded):
		g.code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		g.code = codes.Canceled
	default:
		g.code = codes.Internal
	}
	return g
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// toStatus turns err into a gRPC status error for a unary or stream call.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	g := describe(err)
	st := status.New(g.code, g.msg)
	var details []protoadapt.MessageV1
	if g.reason != "" {
		details = append(details, &errdetails.ErrorInfo{Reason: g.reason, Domain: errorDomain, Metadata: g.metadata})
	}
	if g.retryAfter > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(g.retryAfter)})
	}
	if len(details) > 0 {
		if withDetails, derr := st.WithDetails(details...); derr == nil {
			st = withDetails
		}
	}
	return st.Err()
}

// toProtoError turns err into the in-band error of a stream response.
func toProtoError(err error) *runnelpb.Error {
	g := describe(err)
	return &runnelpb.Error{
		Code:         int32(g.code),
		Message:      g.msg,
		Metadata:     g.metadata,
		RetryAfterMs: g.retryAfter.Milliseconds(),
		Reason:       g.reason,
	}
}
