package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/runnel-dev/runnel/record"
)

// This file holds what a replicated owner of a log needs: a state machine
// that applies a replicated sequence of writes numbered by an index (a raft
// log) and must apply each exactly once across restarts. The log knows
// nothing of the sequence; it stores the index and the owner's state in the
// same Pebble batch as the batch bytes, so after a crash both are from the
// same write.

// StateOp sets one key of a log's state to Value or, when Value is nil,
// deletes it. A log's state is a small key space its owner stores next to
// the batches (for example the idempotent producers' sequence numbers), so
// that it changes in the same Pebble batch as the data.
type StateOp struct {
	Key, Value []byte
}

// Applied returns the index the last ApplyAt recorded, 0 for none. It is
// loaded from disk when the log is opened.
func (l *Log) Applied() uint64 { return l.applied.Load() }

// Durable returns an applied index whose writes are on disk: after a crash
// the log's applied index is at least Durable. It lags Applied on a log
// written with ApplyAt until the store syncs: Sync, or on a store without
// a write-ahead log its own checkpoints (Options.CheckpointBytes).
func (l *Log) Durable() uint64 { return l.durable.Load() }

// noteDurable raises durable to index.
func (l *Log) noteDurable(index uint64) {
	for {
		d := l.durable.Load()
		if index <= d || l.durable.CompareAndSwap(d, index) {
			return
		}
	}
}

// ApplyAt appends b, when it is not nil, records index as the log's applied
// index and applies the state operations state returns, all in one Pebble
// batch. Like Append it assigns b the next offsets, but it writes the base
// offset only into its own copy: b is not modified, so it may be shared
// with other readers.
//
// ApplyAt checks b's CRC and the header fields it uses, but does not decode
// its records: a replicated owner validates each batch in full
// (record.Batch.Validate) once, before it replicates it, and the CRC, which
// covers every record, shows that the bytes are still those. A batch that
// fails the checks returns an error matching ErrCorrupt, or
// record.ErrUnsupported, and changes nothing.
//
// ApplyAt does not wait for the
// write-ahead log sync and End covers the batch when ApplyAt returns: the
// caller keeps a durable copy elsewhere (a raft log) and calls Sync before
// it depends on the log's.
//
// state, when not nil, is called once b is validated, with the base offset
// b gets (End when b is nil), and with the log locked: it must not call the
// log. If ApplyAt fails after calling it, the log is unchanged but for a
// failure of the store itself.
//
// index must be at least Applied; ApplyAt does not interpret it otherwise.
// A log written with ApplyAt must not also be written with Append.
func (l *Log) ApplyAt(index uint64, b record.Batch, state func(base int64) []StateOp) (base int64, err error) {
	if b != nil {
		if err := checkHeader(b); err != nil {
			if errors.Is(err, record.ErrCorrupt) {
				return 0, corruptf(l.id, "apply", err)
			}
			return 0, fmt.Errorf("log %s: apply: %w", l.id, err)
		}
	}
	if err := l.acquire(); err != nil {
		return 0, err
	}
	defer l.s.mu.RUnlock()
	size := logPrefixLen + appliedValueLen + 256
	if b != nil {
		size += dataKeyLen + len(b) + batchKeyLen + batchValueLen + timeKeyLen + timeValueLen
	}
	pb := l.s.db.NewBatchWithSize(size)
	defer pb.Close()

	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writableLocked(); err != nil {
		return 0, err
	}
	if applied := l.applied.Load(); index < applied {
		return 0, fmt.Errorf("log %s: apply index %d below applied index %d", l.id, index, applied)
	}
	base = l.next
	var t tail
	if b != nil {
		if t, err = l.stageLocked(pb, b, base); err != nil {
			return 0, fmt.Errorf("log %s: apply at %d: %w", l.id, base, err)
		}
	}
	if err := pb.Set(appliedKey(l.id), binary.BigEndian.AppendUint64(nil, index), nil); err != nil {
		return 0, fmt.Errorf("log %s: apply: %w", l.id, err)
	}
	if state != nil {
		if err := stageState(pb, l.id, state(base)); err != nil {
			return 0, fmt.Errorf("log %s: apply: %w", l.id, err)
		}
	}
	if err := l.s.db.Apply(pb, pebble.NoSync); err != nil {
		return 0, fmt.Errorf("log %s: apply at %d: %w", l.id, base, err)
	}
	l.applied.Store(index)
	l.s.wrote(len(pb.Repr()))
	if b != nil {
		l.setTailLocked(t)
		l.advance(t.next, t.cum)
		l.s.appends.Add(1)
		l.s.records.Add(int64(b.Count()))
		l.s.bytes.Add(int64(len(b)))
	}
	return base, nil
}

// checkHeader checks what ApplyAt relies on without decoding b's records:
// the CRC, and the header fields record.Batch.Validate checks without them.
// It returns an error matching record.ErrCorrupt or record.ErrUnsupported.
func checkHeader(b record.Batch) error {
	if err := b.CheckCRC(); err != nil {
		return err
	}
	if c := b.Attributes() & compressionMask; c != 0 {
		return fmt.Errorf("%w: compression codec %d", record.ErrUnsupported, c)
	}
	if n := b.Count(); n <= 0 || int(b.LastOffsetDelta()) != n-1 {
		return fmt.Errorf("%w: record count %d, last offset delta %d", record.ErrCorrupt, n, b.LastOffsetDelta())
	}
	return nil
}

// compressionMask selects the compression codec in a batch's attributes.
const compressionMask = 0x7

// stageLocked stages b, with base offset base, and its index entries in pb,
// without modifying b. l.mu must be held.
func (l *Log) stageLocked(pb *pebble.Batch, b record.Batch, base int64) (tail, error) {
	op := pb.SetDeferred(dataKeyLen, len(b))
	copy(op.Key, dataKey(l.id, base))
	copy(op.Value, b)
	record.Batch(op.Value).SetBaseOffset(base)
	if err := op.Finish(); err != nil {
		return tail{}, err
	}
	next := base + int64(b.Count())
	return l.indexLocked(pb, base, next, int64(len(b)), b.MaxTimestamp())
}

// stageState stages state operations in pb.
func stageState(pb *pebble.Batch, id ID, state []StateOp) error {
	for _, op := range state {
		if len(op.Key) == 0 {
			return errors.New("empty state key")
		}
		var err error
		if op.Value == nil {
			err = pb.Delete(stateKey(id, op.Key), nil)
		} else {
			err = pb.Set(stateKey(id, op.Key), op.Value, nil)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// State calls fn for every key of the log's state, in key order, until fn
// returns an error, which State returns. key and value are valid only
// during the call.
func (l *Log) State(fn func(key, value []byte) error) error {
	if err := l.acquire(); err != nil {
		return err
	}
	defer l.s.mu.RUnlock()
	lo, hi := logBounds(prefixState, l.id)
	it, err := l.s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("log %s: state: %w", l.id, err)
	}
	defer it.Close()
	return l.eachState(it, fn)
}

// eachState calls fn for every state key it, an iterator over the log's
// state keys, yields, until fn returns an error.
func (l *Log) eachState(it *pebble.Iterator, fn func(key, value []byte) error) error {
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("log %s: state: %w", l.id, err)
		}
		if err := fn(it.Key()[logPrefixLen:], v); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("log %s: state: %w", l.id, err)
	}
	return nil
}

// AppliedState returns the log's applied index, its end and its state as
// of one moment: none of them moves between the three, as a concurrent
// ApplyAt could make separate calls to Applied, End and State see.
func (l *Log) AppliedState() (applied uint64, end int64, state []StateOp, err error) {
	if err := l.acquire(); err != nil {
		return 0, 0, nil, err
	}
	defer l.s.mu.RUnlock()
	lo, hi := logBounds(prefixState, l.id)
	// ApplyAt writes a batch, the applied index and the state in one
	// Pebble batch and moves End, all under mu; an iterator opened under mu
	// sees the state as of the applied index and end read there.
	l.mu.Lock()
	applied, end = l.applied.Load(), l.End()
	it, err := l.s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	l.mu.Unlock()
	if err != nil {
		return 0, 0, nil, fmt.Errorf("log %s: state: %w", l.id, err)
	}
	defer it.Close()
	err = l.eachState(it, func(key, value []byte) error {
		state = append(state, StateOp{Key: bytes.Clone(key), Value: append([]byte{}, value...)}) // never nil: nil deletes
		return nil
	})
	if err != nil {
		return 0, 0, nil, err
	}
	return applied, end, state, nil
}

// Sync makes every write to the log's store so far durable: Pebble's
// write-ahead log is sequential, so one sync covers all logs. On a store
// without one (Options.NoWAL), Sync flushes the memtables.
func (l *Log) Sync() error {
	if err := l.acquire(); err != nil {
		return err
	}
	defer l.s.mu.RUnlock()
	if err := l.s.sync(); err != nil {
		return fmt.Errorf("log %s: sync: %w", l.id, err)
	}
	return nil
}

// RangeSize returns the bytes of the stored batches that hold offsets from
// from up to to. from and to must be batch boundaries in [Start, End]: the
// base offset of a stored batch, or End.
func (l *Log) RangeSize(from, to int64) (int64, error) {
	if err := l.acquire(); err != nil {
		return 0, err
	}
	defer l.s.mu.RUnlock()
	start, end := l.bounds()
	if from < start || to > end || from > to {
		return 0, &OutOfRangeError{Offset: from, Start: start, End: end}
	}
	if from == to {
		return 0, nil
	}
	lo, _ := logBounds(prefixBatch, l.id)
	it, err := l.s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: batchKey(l.id, to)})
	if err != nil {
		return 0, fmt.Errorf("log %s: range size: %w", l.id, err)
	}
	defer it.Close()
	entry := func() (batchEntry, error) {
		v, err := it.ValueAndErr()
		if err != nil {
			return batchEntry{}, fmt.Errorf("log %s: range size: %w", l.id, err)
		}
		e, err := decodeBatchEntry(it.Key(), v)
		if err != nil {
			return batchEntry{}, corruptf(l.id, "batch index", err)
		}
		return e, nil
	}
	if !it.SeekGE(batchKey(l.id, from)) {
		return 0, l.rangeErr(it, from)
	}
	first, err := entry()
	if err != nil {
		return 0, err
	}
	if first.base != from {
		return 0, fmt.Errorf("log %s: range size: offset %d is not a batch boundary", l.id, from)
	}
	if !it.Last() {
		return 0, l.rangeErr(it, to)
	}
	last, err := entry()
	if err != nil {
		return 0, err
	}
	if last.next != to {
		return 0, fmt.Errorf("log %s: range size: offset %d is not a batch boundary", l.id, to)
	}
	return last.cum - (first.cum - first.size), nil
}

func (l *Log) rangeErr(it *pebble.Iterator, off int64) error {
	if err := it.Error(); err != nil {
		return fmt.Errorf("log %s: range size: %w", l.id, err)
	}
	// The batch was there when bounds were read: retention removed it since.
	start, end := l.bounds()
	return &OutOfRangeError{Offset: off, Start: start, End: end}
}

// loadApplied reads log id's applied index, 0 when there is none.
func (s *Store) loadApplied(id ID) (uint64, error) {
	v, closer, err := s.db.Get(appliedKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("log %s: load: %w", id, err)
	}
	defer closer.Close()
	if len(v) != appliedValueLen {
		return 0, corruptf(id, "load", fmt.Errorf("applied index: %d bytes, want %d", len(v), appliedValueLen))
	}
	return binary.BigEndian.Uint64(v), nil
}

// WriteState applies state operations on their own, without a batch or an
// applied index, for an owner that appends with Append (a log on one
// node). It orders the write after every earlier one and returns at once;
// wait blocks until the write is durable (at once on a store with
// NoSync), and must be called exactly once. Like Append it fails with
// ErrNoWAL on a store without a write-ahead log.
func (l *Log) WriteState(ops []StateOp) (wait func() error, err error) {
	if l.s.opts.NoWAL {
		return nil, ErrNoWAL
	}
	if err := l.acquire(); err != nil {
		return nil, err
	}
	pb := l.s.db.NewBatch()
	release := func() {
		pb.Close()
		l.s.mu.RUnlock()
	}
	if err := stageState(pb, l.id, ops); err != nil {
		release()
		return nil, fmt.Errorf("log %s: write state: %w", l.id, err)
	}
	// Under l.mu, as an append: a log whose sync failed takes no more
	// writes, and the write is ordered with the appends.
	l.mu.Lock()
	err = l.writableLocked()
	if err == nil && l.s.opts.NoSync {
		err = l.s.db.Apply(pb, pebble.NoSync)
	} else if err == nil {
		err = l.s.db.ApplyNoSyncWait(pb, pebble.Sync)
	}
	l.mu.Unlock()
	if err != nil {
		release()
		return nil, fmt.Errorf("log %s: write state: %w", l.id, err)
	}
	return func() error {
		defer release()
		if l.s.opts.NoSync {
			return nil
		}
		if err := pb.SyncWait(); err != nil {
			err = fmt.Errorf("log %s: write state: sync: %w", l.id, err)
			l.fail(err)
			return err
		}
		return nil
	}, nil
}
