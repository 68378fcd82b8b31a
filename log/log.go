package log

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/runnel-dev/runnel/record"
)

// Log is one partition's records: batches addressed by dense offsets from
// Start to End. All methods are safe for concurrent use.
type Log struct {
	s  *Store
	id ID

	// retainMu serializes EnforceRetention and Drop.
	retainMu sync.Mutex

	// mu orders appends: offsets are assigned and batches handed to Pebble
	// under it, so Pebble's write-ahead log holds them in offset order.
	mu sync.Mutex
	// next is the offset the next append gets; batches in [end, next) are
	// in Pebble but not yet known to be durable.
	next int64
	// cum is the cumulative appended bytes up to next.
	cum int64
	// runMax is the largest record timestamp of all stored batches.
	runMax int64
	// sinceIndex counts appended bytes since the last time index entry.
	sinceIndex int64
	retention  Retention
	// applied is the index the last ApplyAt recorded; written under mu.
	applied atomic.Uint64
	// durable is an applied index whose writes are known to be on disk:
	// the log's applied index when it was loaded, or when a sync that
	// returned since had started.
	durable atomic.Uint64

	// dropped is set under mu by Drop.
	dropped atomic.Bool
	// failed is set under mu when a write-ahead log sync fails: what Pebble
	// holds is then unknown, and every later append fails with it.
	failed error

	// endMu guards the offsets readers see and the wait channel.
	endMu sync.Mutex
	// start and end bound the durable batches; cumStart and cumEnd are the
	// cumulative bytes before start and before end.
	start, end       int64
	cumStart, cumEnd int64
	// wait is closed when end advances or the log dies.
	wait chan struct{}
	dead bool
}

// ID returns the log's id.
func (l *Log) ID() ID { return l.id }

// Start returns the first offset still stored.
func (l *Log) Start() int64 {
	l.endMu.Lock()
	defer l.endMu.Unlock()
	return l.start
}

// End returns the offset after the last durable record, the high watermark:
// the next offset to be assigned once appends in flight are durable.
func (l *Log) End() int64 {
	l.endMu.Lock()
	defer l.endMu.Unlock()
	return l.end
}

// Size returns the bytes of the durable batches still stored.
func (l *Log) Size() int64 {
	l.endMu.Lock()
	defer l.endMu.Unlock()
	return l.cumEnd - l.cumStart
}

// bounds returns start and end together.
func (l *Log) bounds() (start, end int64) {
	l.endMu.Lock()
	defer l.endMu.Unlock()
	return l.start, l.end
}

// Wait returns a channel that is closed the next time End advances, or when
// the log is dropped or its store closed. Long-poll readers take the channel
// before they look at End, so no append slips between the two:
//
//	for {
//		w := l.Wait()
//		if from < l.End() {
//			break // read
//		}
//		select {
//		case <-w:
//		case <-ctx.Done():
//			return ctx.Err()
//		}
//	}
func (l *Log) Wait() <-chan struct{} {
	l.endMu.Lock()
	defer l.endMu.Unlock()
	return l.wait
}

// advance moves end to next (if it is further) and wakes waiters.
func (l *Log) advance(next, cum int64) {
	l.endMu.Lock()
	defer l.endMu.Unlock()
	if next <= l.end || l.dead {
		return
	}
	l.end, l.cumEnd = next, cum
	close(l.wait)
	l.wait = make(chan struct{})
}

// kill wakes waiters for good: the log was dropped or the store closed.
func (l *Log) kill() {
	l.endMu.Lock()
	defer l.endMu.Unlock()
	if !l.dead {
		l.dead = true
		close(l.wait)
	}
}

// acquire checks that the log and its store are open and takes the store's
// read lock; release with l.s.mu.RUnlock.
func (l *Log) acquire() error {
	if err := l.s.acquire(); err != nil {
		return err
	}
	if l.dropped.Load() {
		l.s.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

// Append validates b, assigns it the next offsets (writing the base offset
// into b) and stores it. Unless the store has NoSync, Append returns only
// once the batch is durable, and End covers it no earlier than that.
// Concurrent appends share fsyncs. A batch that fails validation returns an
// error matching ErrCorrupt, or record.ErrUnsupported, and stores nothing.
func (l *Log) Append(b record.Batch) (base int64, err error) {
	base, wait, err := l.AppendAsync(b)
	if err != nil {
		return 0, err
	}
	if err := wait(); err != nil {
		return 0, err
	}
	return base, nil
}

// AppendAsync is Append in two steps. It orders b in the log and returns at
// once; wait blocks until the batch is durable (immediately with NoSync). A
// caller that appends from one goroutine and waits on another keeps its
// batches in order while their fsyncs overlap. wait must be called exactly
// once: until then the batch holds the store open.
func (l *Log) AppendAsync(b record.Batch) (base int64, wait func() error, err error) {
	if l.s.opts.NoWAL {
		return 0, nil, ErrNoWAL
	}
	if err := b.Validate(); err != nil {
		if errors.Is(err, record.ErrCorrupt) {
			return 0, nil, corruptf(l.id, "append", err)
		}
		return 0, nil, fmt.Errorf("log %s: append: %w", l.id, err)
	}
	return l.appendAsync(b, nil)
}

// AppendAsyncState is AppendAsync that also applies the state operations
// state returns in the same Pebble batch as b, so that after a crash both
// or neither are there: the state of an owner that appends on one node
// (the idempotent producers of a partition), as ApplyAt's is for a
// replicated one. state, when not nil, is called once with the base offset
// b gets, with the log locked: it must not call the log. If
// AppendAsyncState fails after calling it, the log is unchanged but for a
// failure of the store itself.
//
// Like ApplyAt, AppendAsyncState checks b's CRC and header but does not
// decode its records: the caller validates b first (record.Batch.Validate),
// typically outside its own locks. A batch that fails the checks returns an
// error matching ErrCorrupt, or record.ErrUnsupported, and changes nothing.
func (l *Log) AppendAsyncState(b record.Batch, state func(base int64) []StateOp) (base int64, wait func() error, err error) {
	if l.s.opts.NoWAL {
		return 0, nil, ErrNoWAL
	}
	if err := checkHeader(b); err != nil {
		if errors.Is(err, record.ErrCorrupt) {
			return 0, nil, corruptf(l.id, "append", err)
		}
		return 0, nil, fmt.Errorf("log %s: append: %w", l.id, err)
	}
	return l.appendAsync(b, state)
}

// appendAsync is AppendAsync and AppendAsyncState once b is checked.
func (l *Log) appendAsync(b record.Batch, state func(base int64) []StateOp) (base int64, wait func() error, err error) {
	if err := l.acquire(); err != nil {
		return 0, nil, err
	}
	// Until wait is handed out, an error return must release the store and
	// the Pebble batch.
	handedOut := false

	// Copy the batch into Pebble's batch outside the lock; the offsets are
	// filled in under it.
	capacity := dataKeyLen + len(b) + batchKeyLen + batchValueLen + timeKeyLen + timeValueLen + 64
	if state != nil {
		capacity += 256
	}
	pb := l.s.db.NewBatchWithSize(capacity)
	defer func() {
		if !handedOut {
			pb.Close()
			l.s.mu.RUnlock()
		}
	}()
	op := pb.SetDeferred(dataKeyLen, len(b))
	key, value := op.Key, op.Value
	copy(key, dataKey(l.id, 0))
	copy(value, b)
	size := int64(len(b))
	maxTS := b.MaxTimestamp()

	l.mu.Lock()
	if err := l.writableLocked(); err != nil {
		l.mu.Unlock()
		return 0, nil, err
	}
	base = l.next
	next := base + int64(b.Count())
	cum := l.cum + size
	record.Batch(value).SetBaseOffset(base)
	b.SetBaseOffset(base)
	copy(key, dataKey(l.id, base))
	if err := op.Finish(); err != nil {
		l.mu.Unlock()
		return 0, nil, fmt.Errorf("log %s: append: %w", l.id, err)
	}
	t, err := l.indexLocked(pb, base, next, size, maxTS)
	if err != nil {
		l.mu.Unlock()
		return 0, nil, fmt.Errorf("log %s: append: %w", l.id, err)
	}
	if state != nil {
		if err := stageState(pb, l.id, state(base)); err != nil {
			l.mu.Unlock()
			return 0, nil, fmt.Errorf("log %s: append: %w", l.id, err)
		}
	}
	if l.s.opts.NoSync {
		err = l.s.db.Apply(pb, pebble.NoSync)
	} else {
		err = l.s.db.ApplyNoSyncWait(pb, pebble.Sync)
	}
	if err != nil {
		l.mu.Unlock()
		return 0, nil, fmt.Errorf("log %s: append at %d: %w", l.id, base, err)
	}
	l.setTailLocked(t)
	if l.s.opts.NoSync {
		l.advance(next, cum)
	}
	l.mu.Unlock()

	count := int64(b.Count())
	handedOut = true
	wait = func() error {
		defer l.s.mu.RUnlock()
		defer pb.Close()
		if !l.s.opts.NoSync {
			// Pebble syncs the write-ahead log for every batch waiting here
			// at once. The log is sequential, so once this batch is durable
			// every batch before it is too, and end may jump over appends
			// that have not returned yet.
			if err := pb.SyncWait(); err != nil {
				err = fmt.Errorf("log %s: sync at %d: %w", l.id, base, err)
				l.fail(err)
				return err
			}
			l.advance(next, cum)
		}
		l.s.appends.Add(1)
		l.s.records.Add(count)
		l.s.bytes.Add(size)
		return nil
	}
	return base, wait, nil
}

// fail records err, a failed write-ahead log sync, as the error every
// later append to l fails with, and as the store's.
func (l *Log) fail(err error) {
	l.mu.Lock()
	if l.failed == nil {
		l.failed = err
	}
	l.mu.Unlock()
	l.s.fail(err)
}

// writableLocked returns the error an append must fail with, if any: the
// log was dropped or a write-ahead log sync failed. l.mu must be held.
func (l *Log) writableLocked() error {
	if l.dropped.Load() {
		return ErrClosed
	}
	return l.failed
}

// tail is where the log ends after a staged append: the fields of Log that
// only appends change.
type tail struct {
	next, cum, runMax, sinceIndex int64
}

// indexLocked stages the batch index entry of a batch of size bytes holding
// [base, next) and, once per index interval, a time index entry. It returns
// the log's tail after the batch, for setTailLocked once the Pebble batch is
// applied. l.mu must be held.
func (l *Log) indexLocked(pb *pebble.Batch, base, next, size, maxTS int64) (tail, error) {
	cum := l.cum + size
	if err := pb.Set(batchKey(l.id, base), batchEntry{next: next, maxTS: maxTS, size: size, cum: cum}.encode(), nil); err != nil {
		return tail{}, err
	}
	t := tail{next: next, cum: cum, runMax: max(l.runMax, maxTS), sinceIndex: l.sinceIndex + size}
	if t.sinceIndex >= l.s.opts.indexInterval {
		e := timeEntry{runMax: t.runMax, base: base, next: next, cum: cum}
		if err := pb.Set(timeKey(l.id, t.runMax, base), e.encode(), nil); err != nil {
			return tail{}, err
		}
		t.sinceIndex = 0
	}
	return t, nil
}

// setTailLocked records an applied append's tail. l.mu must be held.
func (l *Log) setTailLocked(t tail) {
	l.next, l.cum, l.runMax, l.sinceIndex = t.next, t.cum, t.runMax, t.sinceIndex
}

// load reads log id's offsets from disk: the batch index gives start, end
// and sizes; the metadata record gives start when retention removed every
// batch; the time index and the batches after its last entry give the
// running max timestamp.
func (s *Store) load(id ID) (*Log, error) {
	l := &Log{s: s, id: id, runMax: math.MinInt64, wait: make(chan struct{})}

	var m meta
	v, closer, err := s.db.Get(metaKey(id))
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("log %s: load: %w", id, err)
	default:
		m, err = decodeMeta(v)
		closer.Close()
		if err != nil {
			return nil, corruptf(id, "load", err)
		}
	}
	l.start, l.end, l.cumStart, l.cumEnd = m.start, m.start, m.cumStart, m.cumStart

	lo, hi := logBounds(prefixBatch, id)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, fmt.Errorf("log %s: load: %w", id, err)
	}
	defer it.Close()
	if it.First() {
		first, err := decodeBatchEntry(it.Key(), it.Value())
		if err != nil {
			return nil, corruptf(id, "load", err)
		}
		if !it.Last() {
			return nil, fmt.Errorf("log %s: load: %w", id, it.Error())
		}
		last, err := decodeBatchEntry(it.Key(), it.Value())
		if err != nil {
			return nil, corruptf(id, "load", err)
		}
		l.start, l.cumStart = first.base, first.cum-first.size
		l.end, l.cumEnd = last.next, last.cum
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("log %s: load: %w", id, err)
	}

	// The running max covers the last time index entry and every batch
	// after it.
	from, cumIndexed := l.start, l.cumStart
	tlo, thi := logBounds(prefixTime, id)
	tit, err := s.db.NewIter(&pebble.IterOptions{LowerBound: tlo, UpperBound: thi})
	if err != nil {
		return nil, fmt.Errorf("log %s: load: %w", id, err)
	}
	defer tit.Close()
	if tit.Last() {
		e, err := decodeTimeEntry(tit.Key(), tit.Value())
		if err != nil {
			return nil, corruptf(id, "load", err)
		}
		l.runMax, from, cumIndexed = e.runMax, e.next, e.cum
	}
	if err := tit.Error(); err != nil {
		return nil, fmt.Errorf("log %s: load: %w", id, err)
	}
	for ok := it.SeekGE(batchKey(id, from)); ok; ok = it.Next() {
		e, err := decodeBatchEntry(it.Key(), it.Value())
		if err != nil {
			return nil, corruptf(id, "load", err)
		}
		l.runMax = max(l.runMax, e.maxTS)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("log %s: load: %w", id, err)
	}
	l.next, l.cum, l.sinceIndex = l.end, l.cumEnd, l.cumEnd-cumIndexed

	applied, err := s.loadApplied(id)
	if err != nil {
		return nil, err
	}
	l.applied.Store(applied)
	l.durable.Store(applied)
	return l, nil
}
