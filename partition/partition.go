package partition

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/record"
)

// Acks says when an append counts as done.
type Acks int

const (
	// AcksAll waits until the batch is durable on a quorum of replicas (on one
	// node: fsynced). It is the default.
	AcksAll Acks = iota
	// AcksLeader waits until the leader has taken the batch in: written on
	// a Partition, proposed on a Replica (whose Append returns then).
	AcksLeader
	// AcksNone does not wait at all.
	AcksNone
)

// Options bound a partition. Zero or negative values mean the defaults,
// which are a Replica's (ReplicaConfig).
type Options struct {
	// MaxPendingBytes bounds the bytes accepted but not yet durable. Zero
	// means 64 MiB.
	MaxPendingBytes int64
	// MaxProducers bounds the idempotent producers remembered; the least
	// recently used is forgotten first. Zero means 10,000.
	MaxProducers int
	// MsgIDWindow is how long, in record timestamps, a message id is
	// remembered. Zero means 2 minutes.
	MsgIDWindow time.Duration
	// MaxMsgIDs bounds the message ids remembered; the oldest go first.
	// Zero means 100,000.
	MaxMsgIDs int
}

// Partition is one partition of a topic on this node. It checks idempotent
// producers and message ids by the rules of a Replica (see Replica), and
// keeps their state in the log's state, written with the batches, so that
// it survives a restart.
type Partition struct {
	log     *log.Log
	opts    Options
	pending atomic.Int64
	dd      partitionDedupe
	q       partitionQueues
}

// New returns a partition over l, which may hold batches and state from
// before. The producer state is loaded from l on the first Append.
func New(l *log.Log, opts Options) *Partition {
	if opts.MaxPendingBytes <= 0 {
		opts.MaxPendingBytes = defaultMaxPendingBytes
	}
	if opts.MaxProducers <= 0 {
		opts.MaxProducers = defaultMaxProducers
	}
	if opts.MsgIDWindow <= 0 {
		opts.MsgIDWindow = defaultMsgIDWindow
	}
	if opts.MaxMsgIDs <= 0 {
		opts.MaxMsgIDs = defaultMaxMsgIDs
	}
	return &Partition{log: l, opts: opts}
}

// Log returns the partition's log.
func (p *Partition) Log() *log.Log { return p.log }

// Pending is an append that has been ordered but may not be durable yet.
// Either Wait or WaitOffset must be called exactly once, whatever the acks.
type Pending struct {
	// Base is the offset of the batch's first record when Append knows it
	// at once, as a Partition does. A Replica assigns offsets when the batch
	// is committed and applied, so its Pendings have Base -1 and WaitOffset
	// returns the offset.
	Base int64
	wait func() (int64, error)
	// w is the replica's waiter: its done channel closes once the outcome
	// is known.
	w *waiter
}

// Ready returns a channel closed once WaitOffset would return at once, or
// nil when the Pending cannot signal that (a Partition's: WaitOffset then
// blocks until the batch is durable). Either way WaitOffset must still be
// called.
func (pd Pending) Ready() <-chan struct{} {
	if pd.w == nil {
		return nil
	}
	return pd.w.done
}

// Wait blocks until the batch is durable: fsynced on a Partition,
// committed by a quorum and applied on a Replica. An fsync cannot be
// abandoned half way, and a raft outcome is bounded by the election
// timeout, so Wait does not take a context.
func (pd Pending) Wait() error {
	_, err := pd.WaitOffset()
	return err
}

// WaitOffset is Wait that also returns the batch's base offset. For a
// batch an idempotent producer sent before (see Replica), that is the
// offset of the first copy.
func (pd Pending) WaitOffset() (int64, error) {
	if pd.wait == nil {
		return pd.Base, nil
	}
	return pd.wait()
}

// Append orders b after every batch appended before it and returns a Pending
// to wait on; appends from one goroutine keep their order while their fsyncs
// overlap. The batch is validated; a rejected batch leaves nothing behind.
// acks is accepted for the replicated partition's sake: on one node every
// acknowledgement level orders the batch the same way, and the caller
// decides whether to answer before or after Wait.
//
// A batch of an idempotent producer, or whose records all carry message
// ids, is checked as a Replica's state machine checks it, before it is
// written: Append fails at once with ErrOutOfOrderSequence,
// ErrDuplicateSequence or ErrProducerFenced, and a duplicate is not written
// again: its Pending's Base is the first copy's, and Wait waits until that
// copy is durable.
func (p *Partition) Append(b record.Batch, acks Acks) (Pending, error) {
	// A batch that takes part in deduplication is validated here, before
	// its producer fields and message ids are read; any other is validated
	// by the log's AppendAsync, so that its CRC is computed once.
	dedupe := needsDedupe(b)
	if dedupe {
		if err := b.Validate(); err != nil {
			return Pending{}, fmt.Errorf("partition %s: append: %w", p.log.ID(), err)
		}
	}
	n := int64(len(b))
	if cur := p.pending.Add(n); cur > p.opts.MaxPendingBytes && cur != n {
		p.pending.Add(-n)
		return Pending{}, &BacklogError{Pending: cur - n, Limit: p.opts.MaxPendingBytes, RetryAfter: 50 * time.Millisecond}
	}
	var (
		base int64
		wait func() error
		err  error
	)
	if dedupe {
		base, wait, err = p.appendDedupe(b)
	} else {
		// Nothing to check or record: no need to wait for the lock.
		base, wait, err = p.log.AppendAsync(b)
	}
	if err != nil {
		p.pending.Add(-n)
		return Pending{}, err
	}
	return Pending{Base: base, wait: func() (int64, error) {
		defer p.pending.Add(-n)
		return base, wait()
	}}, nil
}

// Read returns batches from offset from, below the high watermark.
func (p *Partition) Read(from int64, maxBytes int) ([]record.Batch, error) {
	return p.log.Read(from, maxBytes)
}

// Start returns the first offset still stored.
func (p *Partition) Start() int64 { return p.log.Start() }

// End returns the high watermark: the offset after the last committed record.
func (p *Partition) End() int64 { return p.log.End() }

// Wait returns a channel closed when the high watermark next moves.
func (p *Partition) Wait() <-chan struct{} { return p.log.Wait() }

// OffsetForTime returns the first offset with a timestamp at or after ms.
func (p *Partition) OffsetForTime(ms int64) (int64, error) { return p.log.OffsetForTime(ms) }
