package broker

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/runnel-dev/runnel/partition"
)

var (
	// ErrTopicNotFound is matched by *TopicNotFoundError.
	ErrTopicNotFound = errors.New("broker: topic not found")
	// ErrTopicExists is returned when creating a topic that exists.
	ErrTopicExists = errors.New("broker: topic exists")
	// ErrPartitionNotFound is matched by *PartitionNotFoundError.
	ErrPartitionNotFound = errors.New("broker: partition not found")
	// ErrInvalidTopicName is returned for a name outside [a-zA-Z0-9._-]{1,249}.
	ErrInvalidTopicName = errors.New("broker: invalid topic name")
	// ErrInvalidConfig is returned for an unknown config key or a bad value.
	ErrInvalidConfig = errors.New("broker: invalid config")
	// ErrInvalidPartitions is returned for a partition count below 1 or above the limit.
	ErrInvalidPartitions = errors.New("broker: invalid partition count")
	// ErrBatchTooLarge is matched by *BatchTooLargeError.
	ErrBatchTooLarge = errors.New("broker: batch too large")
	// ErrInvalidRequest is returned for a request missing a required field.
	ErrInvalidRequest = errors.New("broker: invalid request")
	// ErrShuttingDown is returned for requests that arrive while the broker closes.
	ErrShuttingDown = errors.New("broker: shutting down")
	// ErrCatchingUp is returned by a cluster node that has not yet caught up
	// with the controller's state since it started; retry shortly.
	ErrCatchingUp = errors.New("broker: catching up")
	// ErrNotLeader is matched by *NotLeaderError.
	ErrNotLeader = errors.New("broker: not the leader")
	// ErrNoLeader is returned when a raft group has no leader right now;
	// retry shortly.
	ErrNoLeader = errors.New("broker: no leader")
	// ErrOutcomeUnknown is returned when a write may or may not have been
	// committed, such as when leadership was lost during it. Retrying is
	// safe for idempotent producers.
	ErrOutcomeUnknown = errors.New("broker: outcome unknown")
	// ErrGroupNotFound is matched by *GroupNotFoundError.
	ErrGroupNotFound = errors.New("broker: group not found")
	// ErrStaleGeneration is returned for a group request from a member
	// that is no longer in the group, or for a partition it no longer
	// owns, or with a generation older than its ownership: the member
	// must drop its partitions and join again.
	ErrStaleGeneration = errors.New("broker: stale group generation")
	// ErrGroupActive is returned for a seek or delete of a group that has
	// live members.
	ErrGroupActive = errors.New("broker: group has live members")
	// ErrDiskFull is matched by *DiskFullError.
	ErrDiskFull = errors.New("broker: disk almost full")
	// ErrNotCoordinator is matched by *NotCoordinatorError.
	ErrNotCoordinator = errors.New("broker: not the group coordinator")
)

// kindError is an error whose message is written for a person and whose
// kind is one of the sentinels above, matched with errors.Is.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

// errorf returns an error of the given kind with a formatted message.
func errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// TopicNotFoundError names the missing topic.
type TopicNotFoundError struct{ Topic string }

func (e *TopicNotFoundError) Error() string {
	return fmt.Sprintf("topic %q not found; create it with: runnel topic create %s", e.Topic, e.Topic)
}

// Is reports whether target is ErrTopicNotFound.
func (e *TopicNotFoundError) Is(target error) bool { return target == ErrTopicNotFound }

// PartitionNotFoundError names the missing partition and how many there are.
type PartitionNotFoundError struct {
	Topic      string
	Partition  int32
	Partitions int
}

func (e *PartitionNotFoundError) Error() string {
	return fmt.Sprintf("topic %q has no partition %d; it has partitions 0 to %d", e.Topic, e.Partition, e.Partitions-1)
}

// Is reports whether target is ErrPartitionNotFound.
func (e *PartitionNotFoundError) Is(target error) bool { return target == ErrPartitionNotFound }

// NotLeaderError says which node leads a partition this node cannot serve.
// It matches ErrNotLeader.
type NotLeaderError struct {
	Topic      string
	Partition  int32
	LeaderID   int32
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	return fmt.Sprintf("this node does not lead %s/%d; node %d at %s does", e.Topic, e.Partition, e.LeaderID, e.LeaderAddr)
}

// Is reports whether target is ErrNotLeader.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// BatchTooLargeError says which limit a batch broke.
type BatchTooLargeError struct {
	Topic     string
	Partition int32
	Size      int
	Limit     int
}

func (e *BatchTooLargeError) Error() string {
	return fmt.Sprintf("record batch of %s for %s/%d exceeds max.message.bytes (%s) of topic %q; send smaller records or raise it with: runnel topic alter %s --config max.message.bytes=N",
		byteSize(int64(e.Size)), e.Topic, e.Partition, byteSize(int64(e.Limit)), e.Topic, e.Topic)
}

// Is reports whether target is ErrBatchTooLarge.
func (e *BatchTooLargeError) Is(target error) bool { return target == ErrBatchTooLarge }

// byteSize writes n bytes for a person, in GiB, MiB or KiB.
func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// notLeader turns a partition's not-leader error into the broker's: no
// leader at all, or a NotLeaderError naming the leader. It returns nil for
// any other error.
func notLeader(topic string, part int32, err error) error {
	var pnl *partition.NotLeaderError
	if !errors.As(err, &pnl) {
		return nil
	}
	if pnl.LeaderID == "" {
		return errorf(ErrNoLeader, "%s/%d has no leader: a majority of its replicas is not reachable or an election is under way", topic, part)
	}
	id, _ := strconv.Atoi(pnl.LeaderID)
	return &NotLeaderError{Topic: topic, Partition: part, LeaderID: int32(id), LeaderAddr: pnl.LeaderAddr}
}
