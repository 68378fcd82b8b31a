package partition

import (
	"errors"
	"fmt"
	"time"
)

// Errors of Append and Pending.Wait. Each says whether the batch was written
// (definite failure: it was not; success: it was, once) or whether nobody can
// know yet (ErrOutcomeUnknown). A client may retry any of them; with an
// idempotent producer (package record's producer id, epoch and sequence) a
// retry after ErrOutcomeUnknown is written at most once.
var (
	// ErrBacklogFull is returned when a partition already holds as many
	// pending (accepted but not yet durable) bytes as it may. Definite: the
	// batch was not written; retry after the BacklogError's delay.
	ErrBacklogFull = errors.New("partition: too many pending bytes")
	// ErrClosed is returned after Close, and by Append on a Replica that is
	// closing. Definite: the batch was not written.
	ErrClosed = errors.New("partition: closed")

	// ErrNotLeader is matched by the *NotLeaderError a Replica's Append
	// returns on a replica that is not the group's leader. Definite: the
	// batch was not proposed; send it to the leader the error names.
	// raft's own ErrNotLeader, for a proposal that reaches raft just as the
	// node steps down, comes too late to tell apart from a lost leadership
	// and is reported as ErrOutcomeUnknown. raft's ErrEnqueueTimeout does
	// not occur: proposals are handed to raft without a timeout, and raft
	// takes them at once in every state.
	ErrNotLeader = errors.New("partition: not the leader")

	// ErrOutcomeUnknown is matched by Pending.Wait's error when the batch
	// was proposed to raft but the replica stopped being the leader (raft's
	// ErrLeadershipLost), its term moved on, or it was closed (raft's
	// ErrRaftShutdown) before the entry was seen applied. The batch may or
	// may not be committed; a later leader may still commit it. Clients
	// retry; the idempotent producer check makes the retry safe.
	ErrOutcomeUnknown = errors.New("partition: outcome unknown")

	// ErrOutOfOrderSequence is returned when an idempotent producer's batch
	// does not follow the producer's last sequence number: a batch before it
	// is missing (base sequence > last + 1). Definite, and retriable: the
	// client resends the missing batches first, as Kafka's producer does.
	ErrOutOfOrderSequence = errors.New("partition: out of order sequence number")
	// ErrDuplicateSequence is returned for an idempotent producer's batch
	// whose sequence numbers were all written before, but longer ago than
	// the producer's last few batches, so its offset is no longer known.
	// The batch is not written again; the client should count it as
	// delivered, at an unknown offset (Kafka's DUPLICATE_SEQUENCE_NUMBER).
	ErrDuplicateSequence = errors.New("partition: duplicate sequence number")
	// ErrProducerFenced is returned for a batch whose producer epoch is lower
	// than the epoch the partition has seen for that producer id: a newer
	// instance of the producer took over. Definite: not written.
	ErrProducerFenced = errors.New("partition: producer fenced by a newer epoch")

	// ErrReplicaFailed is matched when the replica's state machine could
	// not write to its log (a disk error). The replica stops applying
	// entries and shuts its raft node down; reopening it replays the raft
	// log from the last entry the log recorded. Append returns it at once
	// from then on. Pending.Wait's error for the entry that failed, and
	// those after it, matches ErrOutcomeUnknown too: the entry is committed
	// and the other replicas apply it.
	ErrReplicaFailed = errors.New("partition: replica failed")

	// ErrNoLogEnd is what ReplicaConfig.PeerLogEnd's error matches when the
	// follower cannot tell where its log ends at all (it runs a version
	// without partial snapshots): the leader sends it snapshots whole at
	// once, instead of holding them back as for a follower that is down.
	ErrNoLogEnd = errors.New("partition: the follower does not report its log end")
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

// NotLeaderError is returned by a Replica that is not its group's leader. It
// names the leader when the replica knows it (LeaderID and LeaderAddr are
// empty otherwise) and matches ErrNotLeader.
type NotLeaderError struct {
	LeaderID   string
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" {
		return "not the leader; leader unknown"
	}
	return fmt.Sprintf("not the leader; leader is %s at %s", e.LeaderID, e.LeaderAddr)
}

// Is reports whether target is ErrNotLeader.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }
