package partition

import (
	"context"
	"fmt"
	"time"

	"github.com/runnel-dev/runnel/consumergroup"
)

// Queue groups on a Replica: every operation is a raft entry of the
// partition's group, proposed by the leader with its clock's time and
// applied by every replica's state machine (fsm.go, queues.go), so leases
// survive a change of leader. The leader answers from its own state
// machine's result.

// Lease leases up to req.Max records of queue group req.Group, waiting up
// to wait for one to become available. It returns no records when none
// became available in time. On a replica that is not the leader it fails
// with a *NotLeaderError; an error matching ErrOutcomeUnknown means the
// lease may have been taken (its records then come back when it expires).
func (r *Replica) Lease(ctx context.Context, req LeaseRequest, wait time.Duration) ([]LeasedRecord, error) {
	check := func() (<-chan struct{}, error) {
		ch := r.LeaderChanged()
		if !r.IsLeader() {
			return nil, r.notLeader()
		}
		return ch, nil
	}
	return lease(ctx, r.log, r.fsm.queues, req, wait, check, r.proposeQueue)
}

// Settle applies settle operations (ack, nack, extend, reject) of queue
// group group and returns one error per operation: nil when done, else
// matching consumergroup.ErrLeaseLost or consumergroup.ErrSettled.
func (r *Replica) Settle(group string, ops []consumergroup.Settle) ([]error, error) {
	return settle(group, ops, r.proposeQueue)
}

// ResetQueue moves queue group group to offset off: records from off on
// are delivered again, those below are settled. A group that does not
// exist yet on the partition starts there.
func (r *Replica) ResetQueue(group string, off int64) error {
	return resetQueue(r.log, group, off, r.proposeQueue)
}

// DeleteQueue forgets queue group group on this partition.
func (r *Replica) DeleteQueue(group string) error {
	return deleteQueue(group, r.proposeQueue)
}

// QueueGroups describes the queue group named group on this partition, or
// every group when group is "", as this replica's state machine has it. It
// fails with an error matching ErrReplicaFailed once the state machine
// stopped (on a queue state that a snapshot restore could not load, for
// one): the groups it holds may be out of date.
func (r *Replica) QueueGroups(group string) ([]QueueGroupInfo, error) {
	select {
	case <-r.fsm.failCh:
		// failed is set before failCh is closed.
		return nil, fmt.Errorf("partition %s: queue groups: %w", r.log.ID(), r.fsm.failed)
	default:
	}
	return r.fsm.queues.info(group), nil
}

// proposeQueue proposes op and waits for its result.
func (r *Replica) proposeQueue(op *queueOp) (queueResult, error) {
	data := op.encode()
	if err := r.acquire(); err != nil {
		return queueResult{}, err
	}
	w, err := r.propose(data, false)
	r.closeMu.RUnlock()
	if err != nil {
		return queueResult{}, err
	}
	<-w.done
	if w.res.err != nil {
		return queueResult{}, w.res.err
	}
	if w.res.queue == nil {
		return queueResult{}, ErrOutcomeUnknown
	}
	return *w.res.queue, nil
}

// QueueBacklog returns how many records the slowest queue group of the
// partition has not settled (from its start to the log's end), and its
// name; 0 and "" without groups.
func (r *Replica) QueueBacklog() (int64, string) { return r.fsm.queues.backlog(r.log.End()) }
