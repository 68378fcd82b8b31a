package partition

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/runnel-dev/runnel/consumergroup"
)

// Queue groups on a single node: the same state as a Replica's, changed
// under a lock and written to the log's state with a sync before the
// answer.

// partitionQueues is a Partition's queue state, loaded on first use.
type partitionQueues struct {
	once    sync.Once
	qs      *queues
	loadErr error // set by once

	mu  sync.Mutex // orders operations and their writes
	err error      // a write that failed after the state changed
}

// queues returns the queue state, loading it on the first call, or the
// error that loading it failed with.
func (p *Partition) queues() (*queues, error) {
	p.q.once.Do(func() {
		p.q.qs = newQueues()
		if err := p.q.qs.load(p.log); err != nil {
			p.q.loadErr = fmt.Errorf("partition %s: %w", p.log.ID(), err)
		}
	})
	return p.q.qs, p.q.loadErr
}

// writeErr returns the error of a state write that failed, if any.
func (p *Partition) writeErr() error {
	p.q.mu.Lock()
	defer p.q.mu.Unlock()
	return p.q.err
}

func (p *Partition) doQueue(op *queueOp) (queueResult, error) {
	qs, err := p.queues()
	if err != nil {
		return queueResult{}, err
	}
	p.q.mu.Lock()
	if p.q.err != nil {
		p.q.mu.Unlock()
		return queueResult{}, p.q.err
	}
	res, ops := qs.apply(p.log, op)
	var wait func() error
	if len(ops) > 0 {
		if wait, err = p.log.WriteState(ops); err != nil {
			p.q.err = fmt.Errorf("partition %s: queue state not written, reopen the partition: %w", p.log.ID(), err)
			p.q.mu.Unlock()
			return queueResult{}, p.q.err
		}
	}
	p.q.mu.Unlock()
	if wait != nil {
		if err := wait(); err != nil {
			return queueResult{}, err
		}
	}
	return res, nil
}

// Lease is Replica.Lease on a single node.
func (p *Partition) Lease(ctx context.Context, req LeaseRequest, wait time.Duration) ([]LeasedRecord, error) {
	qs, err := p.queues()
	if err != nil {
		return nil, err
	}
	check := func() (<-chan struct{}, error) { return nil, nil }
	return lease(ctx, p.log, qs, req, wait, check, p.doQueue)
}

// Settle is Replica.Settle on a single node.
func (p *Partition) Settle(group string, ops []consumergroup.Settle) ([]error, error) {
	return settle(group, ops, p.doQueue)
}

// ResetQueue is Replica.ResetQueue on a single node.
func (p *Partition) ResetQueue(group string, off int64) error {
	return resetQueue(p.log, group, off, p.doQueue)
}

// DeleteQueue is Replica.DeleteQueue on a single node.
func (p *Partition) DeleteQueue(group string) error { return deleteQueue(group, p.doQueue) }

// QueueGroups is Replica.QueueGroups on a single node. It fails when the
// queue state could not be loaded, or a write of it failed.
func (p *Partition) QueueGroups(group string) ([]QueueGroupInfo, error) {
	qs, err := p.queues()
	if err != nil {
		return nil, err
	}
	if err := p.writeErr(); err != nil {
		return nil, err
	}
	return qs.info(group), nil
}

// QueueBacklog is Replica.QueueBacklog on a single node.
func (p *Partition) QueueBacklog() (int64, string) {
	qs, err := p.queues()
	if err != nil {
		return 0, ""
	}
	return qs.backlog(p.log.End())
}
