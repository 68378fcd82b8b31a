package log

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/runnel-dev/runnel/record"
)

// Read returns stored batches, in order, that cover offsets from from up to
// End: as many as fit in maxBytes, but at least one when from < End. The
// first batch may start before from; readers skip the records before it.
// Read returns nil, nil when from == End, and an *OutOfRangeError when from
// is before Start or after End. Each batch is checked; a bad one returns an
// error matching ErrCorrupt. The batches are the caller's to keep.
func (l *Log) Read(from int64, maxBytes int) ([]record.Batch, error) {
	if err := l.acquire(); err != nil {
		return nil, err
	}
	defer l.s.mu.RUnlock()

	// Read end before opening the iterator and start after: the iterator
	// then sees every batch below end (they were applied before end
	// advanced) and none at or above start has been deleted from its view
	// (retention moves start after it deletes).
	end := l.End()
	lo, _ := logBounds(prefixData, l.id)
	it, err := l.s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: dataKey(l.id, end)})
	if err != nil {
		return nil, fmt.Errorf("log %s: read: %w", l.id, err)
	}
	defer it.Close()
	start := l.Start()
	if from < start || from > end {
		return nil, &OutOfRangeError{Offset: from, Start: start, End: end}
	}
	if from == end {
		return nil, nil
	}

	var out []record.Batch
	total := 0
	want := from // the offset the next batch must hold
	full := false
	for ok := it.SeekLT(dataKey(l.id, from+1)); ok; ok = it.Next() {
		b, err := l.batchAt(it, want, len(out) == 0)
		if err != nil {
			return nil, err
		}
		if len(out) > 0 && total+len(b) > maxBytes {
			full = true
			break
		}
		out = append(out, append(record.Batch(nil), b...))
		total += len(b)
		want = b.NextOffset()
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("log %s: read at %d: %w", l.id, want, err)
	}
	if !full && want < end {
		// The batches ran out before end.
		return nil, corruptf(l.id, fmt.Sprintf("offset %d", want), errors.New("no stored batch holds it"))
	}
	return out, nil
}

// batchAt checks the batch under it and returns it, still aliasing Pebble's
// memory. The batch must hold offset want: start at it, or, for the first
// batch of a read, span it.
func (l *Log) batchAt(it *pebble.Iterator, want int64, first bool) (record.Batch, error) {
	base, err := keyOffset(it.Key())
	if err != nil {
		return nil, corruptf(l.id, fmt.Sprintf("offset %d", want), err)
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return nil, fmt.Errorf("log %s: read at %d: %w", l.id, base, err)
	}
	b := record.Batch(v)
	// Append validated every record; on the way out the CRC is enough.
	if err := b.CheckCRC(); err != nil {
		return nil, corruptf(l.id, fmt.Sprintf("offset %d", base), err)
	}
	switch {
	case b.BaseOffset() != base:
		return nil, corruptf(l.id, fmt.Sprintf("offset %d", base),
			fmt.Errorf("batch says base offset %d", b.BaseOffset()))
	case first && (base > want || b.NextOffset() <= want):
		return nil, corruptf(l.id, fmt.Sprintf("offset %d", want),
			fmt.Errorf("nearest batch holds [%d, %d)", base, b.NextOffset()))
	case !first && base != want:
		return nil, corruptf(l.id, fmt.Sprintf("offset %d", want),
			fmt.Errorf("missing: next batch starts at %d", base))
	}
	return b, nil
}
