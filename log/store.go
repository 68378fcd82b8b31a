package log

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/runnel-dev/runnel/internal/pebbleenv"
)

// Store holds the logs of one node in one Pebble database. It is safe for
// concurrent use.
type Store struct {
	opts  Options
	fs    *pebbleenv.FS
	db    *pebble.DB
	cache *pebble.Cache
	log   *slog.Logger

	// mu is held for reading by every operation that touches db and for
	// writing by Close, so Close waits for them and db is never used after
	// it is closed.
	mu     sync.RWMutex
	closed bool

	logsMu sync.Mutex
	logs   map[ID]*Log

	stop chan struct{}
	wg   sync.WaitGroup

	// unsynced counts the bytes ApplyAt and AppendRaw wrote since the
	// last checkpoint began; crossing Options.CheckpointBytes wakes the
	// checkpoint loop through checkpointCh.
	unsynced     atomic.Int64
	checkpointCh chan struct{}

	// failed is the first write-ahead log sync that failed in any log
	// (see Err).
	failedMu sync.Mutex
	failed   error

	appends atomic.Int64
	records atomic.Int64
	bytes   atomic.Int64
	stalls  atomic.Int64
}

// Stats are counters since Open.
type Stats struct {
	// Syncs counts sync calls on write-ahead log files: with group commit
	// one sync makes many appends durable.
	Syncs int64
	// Appends, Records and Bytes count appended batches, their records and
	// their bytes.
	Appends, Records, Bytes int64
	// WALBytes counts bytes written to write-ahead log files.
	WALBytes int64
	// BytesWritten counts bytes written to all files: WAL, flushes and
	// compactions. BytesWritten/Bytes is the write amplification.
	BytesWritten int64
	// WriteStalls counts the times Pebble held writes back to let flushes
	// or compactions catch up.
	WriteStalls int64
}

// fail records err, a log's failed write-ahead log sync, as the store's
// error if it is the first, and logs it.
func (s *Store) fail(err error) {
	s.failedMu.Lock()
	first := s.failed == nil
	if first {
		s.failed = err
	}
	s.failedMu.Unlock()
	if first {
		s.log.Error("write-ahead log sync failed: the log takes no more writes until the store is opened again; if the disk is full, free space and restart", "err", err)
	}
}

// Err returns the first failed write-ahead log sync of any log in the
// store, or nil. What Pebble holds after such a failure is unknown, so the
// log it happened in refuses appends until the store is opened again: a
// node should report itself unready.
func (s *Store) Err() error {
	s.failedMu.Lock()
	defer s.failedMu.Unlock()
	return s.failed
}

// Open opens or creates the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Store{
		opts:  opts,
		fs:    pebbleenv.New(opts.FS),
		cache: pebble.NewCache(opts.CacheBytes),
		log:   opts.Logger.With("component", "log"),
		logs:  make(map[ID]*Log),
		stop:  make(chan struct{}),

		checkpointCh: make(chan struct{}, 1),
	}
	db, err := pebble.Open(dir, opts.pebbleOptions(s.fs, s.cache, &s.stalls))
	if err != nil {
		s.cache.Unref()
		return nil, fmt.Errorf("log: open %s: %w", dir, err)
	}
	s.db = db
	if opts.RetentionInterval > 0 {
		s.wg.Add(1)
		go s.retentionLoop(opts.RetentionInterval)
	}
	if opts.NoWAL && opts.CheckpointBytes > 0 {
		s.wg.Add(1)
		go s.checkpointLoop()
	}
	return s, nil
}

// Close stops the retention loop, waits for operations in flight, wakes
// every waiter and closes the database. Every method of the Store and its
// logs returns ErrClosed afterwards.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	close(s.stop)
	s.mu.Unlock()
	// The loop takes s.mu for reading, so wait for it outside the lock.
	s.wg.Wait()

	s.mu.Lock()
	defer s.mu.Unlock()
	s.logsMu.Lock()
	for _, l := range s.logs {
		l.kill()
	}
	s.logs = nil
	s.logsMu.Unlock()
	var err error
	if s.opts.NoWAL {
		// Without a write-ahead log, what is not flushed is lost on close.
		err = s.db.Flush()
	}
	err = errors.Join(err, s.db.Close())
	s.cache.Unref()
	if err != nil {
		return fmt.Errorf("log: close: %w", err)
	}
	return nil
}

// writeSync returns the write options of a write that must be durable
// when it returns: synced, unless the store has no write-ahead log to sync.
func (s *Store) writeSync() *pebble.WriteOptions {
	if s.opts.NoWAL {
		return pebble.NoSync
	}
	return pebble.Sync
}

// sync makes every write so far durable: it syncs the write-ahead log, or
// without one flushes the memtables. Each open log's Durable then moves up
// to its applied index from before the sync began. The caller holds s.mu
// for reading.
func (s *Store) sync() error {
	s.logsMu.Lock()
	logs := make([]*Log, 0, len(s.logs))
	marks := make([]uint64, 0, len(s.logs))
	for _, l := range s.logs {
		logs = append(logs, l)
		marks = append(marks, l.applied.Load())
	}
	s.logsMu.Unlock()
	var err error
	if s.opts.NoWAL {
		s.unsynced.Store(0)
		err = s.db.Flush()
	} else {
		err = s.db.LogData(nil, pebble.Sync)
	}
	if err != nil {
		return err
	}
	for i, l := range logs {
		l.noteDurable(marks[i])
	}
	return nil
}

// wrote counts n bytes written without a sync, and wakes the checkpoint
// loop when they reach Options.CheckpointBytes.
func (s *Store) wrote(n int) {
	if !s.opts.NoWAL || s.opts.CheckpointBytes <= 0 {
		return
	}
	if s.unsynced.Add(int64(n)) >= s.opts.CheckpointBytes {
		select {
		case s.checkpointCh <- struct{}{}:
		default:
		}
	}
}

// checkpointLoop flushes a store without a write-ahead log once
// Options.CheckpointBytes have been written since the last flush, or once
// per Options.CheckpointInterval when anything has, so that each log's
// Durable keeps up: its owner can then drop its own copy (raft log
// entries) up to there, before that copy is flushed too. Checkpoints start
// at least checkpointGap apart: under a heavy load a flush every few MiB
// would fill level 0 with small files faster than compactions merge them.
func (s *Store) checkpointLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.CheckpointInterval)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-s.stop:
			return
		case <-s.checkpointCh:
		case <-t.C:
			if s.unsynced.Load() == 0 {
				continue
			}
		}
		if wait := checkpointGap - time.Since(last); wait > 0 {
			select {
			case <-s.stop:
				return
			case <-time.After(wait):
			}
		}
		last = time.Now()
		if err := s.acquire(); err != nil {
			return
		}
		err := s.sync()
		s.mu.RUnlock()
		if err != nil {
			s.log.Error("checkpoint flush failed", "err", err)
		}
	}
}

// acquire takes the store's read lock for an operation that touches the
// database; release with s.mu.RUnlock.
func (s *Store) acquire() error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

// Log returns the log id, creating an empty one if there is none. It returns
// the same *Log for the same id until the log is dropped or the store closed.
// Its offsets are loaded from disk on the first call.
func (s *Store) Log(id ID) (*Log, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	s.logsMu.Lock()
	defer s.logsMu.Unlock()
	if l, ok := s.logs[id]; ok {
		return l, nil
	}
	l, err := s.load(id)
	if err != nil {
		return nil, err
	}
	s.logs[id] = l
	return l, nil
}

// Drop deletes every batch, index entry and the metadata of log id, whether
// or not it was opened. A *Log for id returns ErrClosed afterwards; the next
// call to Log creates an empty log that starts at offset 0.
func (s *Store) Drop(id ID) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	s.logsMu.Lock()
	defer s.logsMu.Unlock()
	l := s.logs[id]
	if l != nil {
		// Hold off retention and appends while the ranges go.
		l.retainMu.Lock()
		defer l.retainMu.Unlock()
		l.mu.Lock()
		defer l.mu.Unlock()
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, p := range allPrefixes {
		lo, hi := logBounds(p, id)
		if err := b.DeleteRange(lo, hi, nil); err != nil {
			return fmt.Errorf("log %s: drop: %w", id, err)
		}
	}
	if err := s.db.Apply(b, s.writeSync()); err != nil {
		return fmt.Errorf("log %s: drop: %w", id, err)
	}
	if s.opts.NoWAL {
		// A dropped log is not written again, so nothing would replay
		// the drop after a crash.
		if err := s.db.Flush(); err != nil {
			return fmt.Errorf("log %s: drop: %w", id, err)
		}
	}
	if l != nil {
		l.dropped.Store(true)
		l.kill()
		delete(s.logs, id)
	}
	return nil
}

// IDs returns, in order, the id of every log that has batches, metadata,
// an applied index or state on disk, whether opened or not. A broker can
// use it to find logs it no longer needs.
func (s *Store) IDs() ([]ID, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	seen := make(map[ID]bool)
	for _, p := range []byte{prefixBatch, prefixMeta, prefixApplied, prefixState} {
		lo, _ := logBounds(p, ID{})
		_, hi := logBounds(p, ID{Topic: 1<<32 - 1, Partition: 1<<32 - 1})
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			return nil, fmt.Errorf("log: list: %w", err)
		}
		// One seek per log: skip to the next log after each one found.
		for ok := it.First(); ok; {
			k := it.Key()
			if len(k) < logPrefixLen {
				it.Close()
				return nil, fmt.Errorf("log: list: %w", corruptf(ID{}, "key", fmt.Errorf("short key %x", k)))
			}
			id := ID{Topic: binary.BigEndian.Uint32(k[1:]), Partition: binary.BigEndian.Uint32(k[5:])}
			seen[id] = true
			_, next := logBounds(p, id)
			ok = it.SeekGE(next)
		}
		err = it.Error()
		it.Close()
		if err != nil {
			return nil, fmt.Errorf("log: list: %w", err)
		}
	}
	ids := make([]ID, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b ID) int {
		if c := cmp.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return cmp.Compare(a.Partition, b.Partition)
	})
	return ids, nil
}

// Stats returns counters since Open.
func (s *Store) Stats() Stats {
	return Stats{
		Syncs:        s.fs.WALSyncs(),
		Appends:      s.appends.Load(),
		Records:      s.records.Load(),
		Bytes:        s.bytes.Load(),
		WALBytes:     s.fs.WALBytes(),
		BytesWritten: s.fs.BytesWritten(),
		WriteStalls:  s.stalls.Load(),
	}
}

// retentionLoop enforces every open log's retention once per interval until
// Close.
func (s *Store) retentionLoop(interval time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.enforceRetention()
		}
	}
}

func (s *Store) enforceRetention() {
	s.logsMu.Lock()
	logs := make([]*Log, 0, len(s.logs))
	for _, l := range s.logs {
		logs = append(logs, l)
	}
	s.logsMu.Unlock()
	for _, l := range logs {
		select {
		case <-s.stop:
			return
		default:
		}
		if err := l.EnforceRetention(); err != nil && !errors.Is(err, ErrClosed) {
			s.log.Error("enforce retention", "log", l.id, "err", err)
		}
	}
}
