package log

import (
	"errors"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
	"github.com/runnel-dev/runnel/record"
)

// Reset empties the log so that it starts, and ends, at start: it deletes
// every batch, index entry and state key, and sets the applied index to 0,
// in one Pebble batch. It is the first step of replacing a log's content
// with a copy of another's (a snapshot from a raft leader): AppendRaw then
// adds the copied batches and ApplyAt records their applied index and
// state. A crash in between leaves a log whose applied index is 0, which
// tells its owner the copy is incomplete.
//
// End drops to start until the batches are back, and Wait's channel is
// closed, so long-poll readers look again. Like ApplyAt, Reset does not wait
// for the write-ahead log sync.
func (l *Log) Reset(start int64) error {
	if start < 0 {
		return fmt.Errorf("log %s: reset to negative offset %d", l.id, start)
	}
	if err := l.acquire(); err != nil {
		return err
	}
	defer l.s.mu.RUnlock()
	l.retainMu.Lock()
	defer l.retainMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writableLocked(); err != nil {
		return err
	}
	b := l.s.db.NewBatch()
	defer b.Close()
	for _, p := range allPrefixes {
		lo, hi := logBounds(p, l.id)
		if err := b.DeleteRange(lo, hi, nil); err != nil {
			return fmt.Errorf("log %s: reset: %w", l.id, err)
		}
	}
	if err := b.Set(metaKey(l.id), meta{start: start}.encode(), nil); err != nil {
		return fmt.Errorf("log %s: reset: %w", l.id, err)
	}
	if err := l.s.db.Apply(b, pebble.NoSync); err != nil {
		return fmt.Errorf("log %s: reset: %w", l.id, err)
	}
	l.setTailLocked(tail{next: start, runMax: math.MinInt64})
	l.applied.Store(0)
	l.durable.Store(0)
	l.endMu.Lock()
	defer l.endMu.Unlock()
	l.start, l.end, l.cumStart, l.cumEnd = start, start, 0, 0
	if !l.dead {
		close(l.wait)
		l.wait = make(chan struct{})
	}
	return nil
}

// AppendRaw appends b at the offsets it carries: its base offset must be
// End. It is how a copy of another log is written after Reset; otherwise it
// is ApplyAt without the applied index and state. b is validated and not
// modified.
func (l *Log) AppendRaw(b record.Batch) error {
	if err := b.Validate(); err != nil {
		if errors.Is(err, record.ErrCorrupt) {
			return corruptf(l.id, "append raw", err)
		}
		return fmt.Errorf("log %s: append raw: %w", l.id, err)
	}
	if err := l.acquire(); err != nil {
		return err
	}
	defer l.s.mu.RUnlock()
	pb := l.s.db.NewBatchWithSize(dataKeyLen + len(b) + batchKeyLen + batchValueLen + timeKeyLen + timeValueLen + 64)
	defer pb.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writableLocked(); err != nil {
		return err
	}
	base := b.BaseOffset()
	if base != l.next {
		return fmt.Errorf("log %s: append raw: batch at offset %d, log ends at %d", l.id, base, l.next)
	}
	t, err := l.stageLocked(pb, b, base)
	if err != nil {
		return fmt.Errorf("log %s: append raw at %d: %w", l.id, base, err)
	}
	if err := l.s.db.Apply(pb, pebble.NoSync); err != nil {
		return fmt.Errorf("log %s: append raw at %d: %w", l.id, base, err)
	}
	l.s.wrote(len(pb.Repr()))
	l.setTailLocked(t)
	l.advance(t.next, t.cum)
	return nil
}
