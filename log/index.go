package log

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/runnel-dev/runnel/record"
)

// OffsetForTime returns the first offset whose record timestamp is at least
// ms (milliseconds since the Unix epoch), or End when there is none.
//
// Producer timestamps need not grow with offsets. The time index is keyed by
// the running max timestamp, which does: the last entry whose running max is
// below ms marks a prefix of the log with no record at or after ms, and the
// answer is in the first batch after it whose max timestamp reaches ms. The
// next index entry bounds the scan to about one index interval.
func (l *Log) OffsetForTime(ms int64) (int64, error) {
	if err := l.acquire(); err != nil {
		return 0, err
	}
	defer l.s.mu.RUnlock()

	// Same order as Read: end, then the snapshot, then start.
	end := l.End()
	snap := l.s.db.NewSnapshot()
	defer snap.Close()
	start := l.Start()
	if start >= end {
		return end, nil
	}

	tlo, _ := logBounds(prefixTime, l.id)
	tit, err := snap.NewIter(&pebble.IterOptions{LowerBound: tlo, UpperBound: timeSeekKey(l.id, ms)})
	if err != nil {
		return 0, fmt.Errorf("log %s: offset for time: %w", l.id, err)
	}
	defer tit.Close()
	blo, _ := logBounds(prefixBatch, l.id)
	bit, err := snap.NewIter(&pebble.IterOptions{LowerBound: blo, UpperBound: batchKey(l.id, end)})
	if err != nil {
		return 0, fmt.Errorf("log %s: offset for time: %w", l.id, err)
	}
	defer bit.Close()

	from := start
	if tit.Last() {
		v, err := tit.ValueAndErr()
		if err != nil {
			return 0, fmt.Errorf("log %s: offset for time: %w", l.id, err)
		}
		e, err := decodeTimeEntry(tit.Key(), v)
		if err != nil {
			return 0, corruptf(l.id, "time index", err)
		}
		from = max(from, e.next)
	}
	if err := tit.Error(); err != nil {
		return 0, fmt.Errorf("log %s: offset for time: %w", l.id, err)
	}

	for ok := bit.SeekGE(batchKey(l.id, from)); ok; ok = bit.Next() {
		v, err := bit.ValueAndErr()
		if err != nil {
			return 0, fmt.Errorf("log %s: offset for time: %w", l.id, err)
		}
		e, err := decodeBatchEntry(bit.Key(), v)
		if err != nil {
			return 0, corruptf(l.id, "batch index", err)
		}
		if e.maxTS >= ms {
			return l.scanBatch(snap, e.base, ms)
		}
	}
	if err := bit.Error(); err != nil {
		return 0, fmt.Errorf("log %s: offset for time: %w", l.id, err)
	}
	return end, nil
}

// scanBatch returns the offset of the first record at or after ms in the
// batch at base, which the batch index says has one.
func (l *Log) scanBatch(snap *pebble.Snapshot, base, ms int64) (int64, error) {
	v, closer, err := snap.Get(dataKey(l.id, base))
	if err != nil {
		if errors.Is(err, pebble.ErrNotFound) {
			return 0, corruptf(l.id, fmt.Sprintf("offset %d", base), errors.New("indexed batch is missing"))
		}
		return 0, fmt.Errorf("log %s: offset for time: %w", l.id, err)
	}
	defer closer.Close()
	b := record.Batch(v)
	if err := b.Validate(); err != nil {
		return 0, corruptf(l.id, fmt.Sprintf("offset %d", base), err)
	}
	it := b.Iter()
	for it.Next() {
		if r := it.Record(); r.Timestamp >= ms {
			return r.Offset, nil
		}
	}
	if err := it.Err(); err != nil {
		return 0, corruptf(l.id, fmt.Sprintf("offset %d", base), err)
	}
	return 0, corruptf(l.id, fmt.Sprintf("offset %d", base),
		fmt.Errorf("batch index says max timestamp >= %d, batch says %d", ms, b.MaxTimestamp()))
}
