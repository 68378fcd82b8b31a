package partition

import (
	"fmt"
	"sync"

	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/record"
)

// Idempotent producers and message ids on a single node: the same state and
// rules as a Replica's (producers.go), checked, written and recorded under
// one lock, and stored as the log's state in the same Pebble batch as the
// data (log.Log.AppendAsyncState), so that a crash keeps a batch and the
// state that records it, or neither.

// partitionDedupe is a Partition's producer state and message id window,
// loaded from the log on first use.
type partitionDedupe struct {
	// mu orders the batches that carry a producer id or message ids: their
	// check, their append and the state they leave are one step.
	mu     sync.Mutex
	d      *dedupe // nil until loaded, and after a write failed half way
	lastID uint64  // stands in for the raft index of a Replica's entries
}

// dedupeLocked returns the state, loading it if need be. p.dd.mu must be
// held.
func (p *Partition) dedupeLocked() (*dedupe, error) {
	if p.dd.d != nil {
		return p.dd.d, nil
	}
	d := newDedupe(p.opts.MaxProducers, p.opts.MsgIDWindow.Milliseconds(), p.opts.MaxMsgIDs)
	if err := d.load(p.log); err != nil {
		return nil, fmt.Errorf("partition %s: %w", p.log.ID(), err)
	}
	// recordProducer orders producers for eviction by the index of their
	// last batch; here that is a counter, which goes on from the most
	// recently used producer's.
	p.dd.lastID = 0
	if e := d.lru.Back(); e != nil {
		p.dd.lastID = e.Value.(*producer).lastUsed
	}
	p.dd.d = d
	return d, nil
}

// nextIDLocked returns the index of the next batch for recordProducer.
// p.dd.mu must be held.
func (p *Partition) nextIDLocked() uint64 {
	p.dd.lastID++
	return p.dd.lastID
}

// appendDedupe is Append's step for a batch with a producer id or message
// ids: it returns the batch's base offset and a function that waits until
// it is durable, after checking and recording the batch as a Replica's
// state machine does. A duplicate is not written again: its base is the
// first copy's, and wait waits until that copy is durable. b is valid.
func (p *Partition) appendDedupe(b record.Batch) (base int64, wait func() error, err error) {
	p.dd.mu.Lock()
	defer p.dd.mu.Unlock()
	d, err := p.dedupeLocked()
	if err != nil {
		return 0, nil, err
	}
	pv, err := d.checkProducer(b)
	if err != nil {
		return 0, nil, fmt.Errorf("partition %s: append: %w", p.log.ID(), err)
	}
	if pv.dup {
		return pv.base, p.durable(pv.base), nil
	}
	iv := d.checkIDs(b)
	if iv.dup {
		// Not written again; an idempotent producer's sequence still moves.
		ops := d.recordProducer(b, iv.base, p.nextIDLocked())
		if len(ops) == 0 {
			return iv.base, p.durable(iv.base), nil
		}
		wait, err := p.log.WriteState(ops)
		if err != nil {
			p.dd.d = nil // ahead of the log: load it again
			return 0, nil, fmt.Errorf("partition %s: append: %w", p.log.ID(), err)
		}
		// The state write is ordered after the first copy: once it is
		// durable, so is the copy.
		return iv.base, wait, nil
	}
	recorded := false
	base, wait, err = p.log.AppendAsyncState(b, func(base int64) []log.StateOp {
		recorded = true
		ops := d.recordProducer(b, base, p.nextIDLocked())
		return append(ops, d.recordIDs(b, iv.ids, base)...)
	})
	if err != nil && recorded {
		p.dd.d = nil // ahead of the log: load it again
	}
	return base, wait, err
}

// durable returns a function that waits until the batch at base, appended
// before, is durable: at once when the log's end covers it already, else
// after a sync of the log's store, which covers every write before it.
func (p *Partition) durable(base int64) func() error {
	if base < p.log.End() {
		return func() error { return nil }
	}
	return p.log.Sync
}

// needsDedupe reports whether b takes part in deduplication: it carries a
// producer id, or its first record a message id (see msgIDs). b need not
// be valid yet: a batch shorter than a header takes no part, and a corrupt
// one fails the validation of either path.
func needsDedupe(b record.Batch) bool {
	if len(b) < record.HeaderSize {
		return false
	}
	if b.ProducerID() >= 0 {
		return true
	}
	it := b.Iter()
	if !it.Next() {
		return false
	}
	v, ok := it.Record().Header(MsgIDHeader)
	return ok && len(v) > 0 && len(v) <= maxMsgIDLen
}
