package log

import (
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Retention bounds how much of a log is kept. Zero fields mean unlimited.
type Retention struct {
	// MaxAge drops batches whose max timestamp is older than this.
	MaxAge time.Duration
	// MaxBytes drops the oldest batches while the log is larger.
	MaxBytes int64
}

// SetRetention sets the log's retention, which EnforceRetention applies.
func (l *Log) SetRetention(r Retention) {
	l.retainMu.Lock()
	defer l.retainMu.Unlock()
	l.retention = r
}

// EnforceRetention drops whole batches from the start of the log while it is
// larger than MaxBytes or the oldest batch's max timestamp is older than
// MaxAge before now. It considers only durable batches, moves Start and never
// End, and may drop every batch, leaving Start == End. Batch bytes and index
// entries go with range deletes, in one Pebble batch with the new start.
// The Store's loop calls it for every open log; callers may call it too.
func (l *Log) EnforceRetention() error {
	if err := l.acquire(); err != nil {
		return err
	}
	defer l.s.mu.RUnlock()
	l.retainMu.Lock()
	defer l.retainMu.Unlock()
	if l.dropped.Load() {
		return ErrClosed
	}
	r := l.retention
	if r.MaxAge <= 0 && r.MaxBytes <= 0 {
		return nil
	}
	l.endMu.Lock()
	start, end, cumEnd := l.start, l.end, l.cumEnd
	l.endMu.Unlock()
	if start == end {
		return nil
	}
	cutoff := l.s.opts.Now().UnixMilli() - r.MaxAge.Milliseconds()

	// Walk the batch index from the start to find the new start.
	newStart, newCumStart := start, int64(0)
	blo, _ := logBounds(prefixBatch, l.id)
	bit, err := l.s.db.NewIter(&pebble.IterOptions{LowerBound: blo, UpperBound: batchKey(l.id, end)})
	if err != nil {
		return fmt.Errorf("log %s: retention: %w", l.id, err)
	}
	defer bit.Close()
	for ok := bit.SeekGE(batchKey(l.id, start)); ok; ok = bit.Next() {
		v, err := bit.ValueAndErr()
		if err != nil {
			return fmt.Errorf("log %s: retention: %w", l.id, err)
		}
		e, err := decodeBatchEntry(bit.Key(), v)
		if err != nil {
			return corruptf(l.id, "batch index", err)
		}
		tooBig := r.MaxBytes > 0 && cumEnd-(e.cum-e.size) > r.MaxBytes
		tooOld := r.MaxAge > 0 && e.maxTS < cutoff
		if !tooBig && !tooOld {
			break
		}
		newStart, newCumStart = e.next, e.cum
	}
	if err := bit.Error(); err != nil {
		return fmt.Errorf("log %s: retention: %w", l.id, err)
	}
	if newStart == start {
		return nil
	}

	// Time index entries are ordered by offset too; delete those of dropped
	// batches.
	tlo, thi := logBounds(prefixTime, l.id)
	tit, err := l.s.db.NewIter(&pebble.IterOptions{LowerBound: tlo, UpperBound: thi})
	if err != nil {
		return fmt.Errorf("log %s: retention: %w", l.id, err)
	}
	defer tit.Close()
	tend := thi
	for ok := tit.First(); ok; ok = tit.Next() {
		v, err := tit.ValueAndErr()
		if err != nil {
			return fmt.Errorf("log %s: retention: %w", l.id, err)
		}
		e, err := decodeTimeEntry(tit.Key(), v)
		if err != nil {
			return corruptf(l.id, "time index", err)
		}
		if e.base >= newStart {
			tend = append([]byte(nil), tit.Key()...)
			break
		}
	}
	if err := tit.Error(); err != nil {
		return fmt.Errorf("log %s: retention: %w", l.id, err)
	}

	dlo, _ := logBounds(prefixData, l.id)
	b := l.s.db.NewBatch()
	defer b.Close()
	for _, rng := range [][2][]byte{
		{dlo, dataKey(l.id, newStart)},
		{blo, batchKey(l.id, newStart)},
		{tlo, tend},
	} {
		if err := b.DeleteRange(rng[0], rng[1], nil); err != nil {
			return fmt.Errorf("log %s: retention: %w", l.id, err)
		}
	}
	if err := b.Set(metaKey(l.id), meta{start: newStart, cumStart: newCumStart}.encode(), nil); err != nil {
		return fmt.Errorf("log %s: retention: %w", l.id, err)
	}
	// No sync: if a crash loses the deletes, the batches come back and
	// retention drops them again. The next synced append makes it durable.
	if err := l.s.db.Apply(b, pebble.NoSync); err != nil {
		return fmt.Errorf("log %s: retention: %w", l.id, err)
	}
	l.endMu.Lock()
	l.start, l.cumStart = newStart, newCumStart
	l.endMu.Unlock()
	return nil
}
