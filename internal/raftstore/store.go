package raftstore

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"

	"github.com/runnel-dev/runnel/internal/pebbleenv"
)

// Store holds the raft logs and stable stores of every raft group on a
// node in one Pebble database, so that the fsyncs of all groups are shared
// (group commit). It is safe for concurrent use.
type Store struct {
	opts  Options
	fs    *pebbleenv.FS
	db    *pebble.DB
	cache *pebble.Cache
	wo    *pebble.WriteOptions

	// mu is held for reading by every operation that touches db and for
	// writing by Close, so db is never used after it is closed.
	mu     sync.RWMutex
	closed bool

	groupsMu sync.Mutex
	groups   map[string]*Group

	entryCache entryCache

	stores, entries, entryBytes atomic.Int64
	cacheHits, cacheMisses      atomic.Int64
}

// Stats are counters since Open.
type Stats struct {
	// Syncs counts sync calls on Pebble's write-ahead log files. With
	// group commit one sync makes the writes of many groups durable, so
	// Entries/Syncs is the entries per fsync.
	Syncs int64
	// StoreCalls, Entries and EntryBytes count StoreLogs calls, the
	// entries they stored and the bytes of those entries as encoded.
	StoreCalls, Entries, EntryBytes int64
	// WALBytes counts bytes written to write-ahead log files.
	WALBytes int64
	// BytesWritten counts bytes written to all files: write-ahead log,
	// flushes and compactions. BytesWritten/EntryBytes is the write
	// amplification.
	BytesWritten int64
	// CacheHits and CacheMisses count GetLog calls answered from the
	// entry cache and from Pebble; CacheBytes is what the cache holds now.
	CacheHits, CacheMisses, CacheBytes int64
}

// Open opens or creates the store in dir, which holds nothing else.
func Open(dir string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	s := &Store{
		opts:       opts,
		fs:         pebbleenv.New(opts.FS),
		cache:      pebble.NewCache(cacheBytes),
		wo:         opts.writeOptions(),
		groups:     make(map[string]*Group),
		entryCache: entryCache{budget: opts.EntryCacheBytes},
	}
	db, err := pebble.Open(dir, opts.pebbleOptions(s.fs, s.cache))
	if err != nil {
		s.cache.Unref()
		return nil, fmt.Errorf("raftstore: open %s: %w", dir, err)
	}
	s.db = db
	return s, nil
}

// Close waits for operations in flight and closes the database. Every
// method of the Store and its groups returns ErrClosed afterwards.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	err := s.db.Close()
	s.cache.Unref()
	if err != nil {
		return fmt.Errorf("raftstore: close: %w", err)
	}
	return nil
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

// Group returns the raft log and stable store of group id, which any string
// names. It returns the same *Group for the same id until DropGroup; the
// group's first and last index are read from disk on first use. Group does
// not touch disk and works on a closed Store, whose groups' methods return
// ErrClosed.
func (s *Store) Group(id string) *Group {
	s.groupsMu.Lock()
	defer s.groupsMu.Unlock()
	if g, ok := s.groups[id]; ok {
		return g
	}
	g := newGroup(s, id)
	s.groups[id] = g
	return g
}

// DropGroup deletes every log entry and stable-store key of group id, with
// range deletes, whether or not the group was used since Open. It is for a
// partition that was deleted: stop its raft first. A *Group for id returns
// ErrDropped afterwards; the next Group(id) returns a new, empty group.
func (s *Store) DropGroup(id string) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	s.groupsMu.Lock()
	defer s.groupsMu.Unlock()
	g := s.groups[id]
	if g != nil {
		// Wait for the group's writes in flight and hold off new ones.
		g.writeMu.Lock()
		defer g.writeMu.Unlock()
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, p := range []byte{prefixLog, prefixStable} {
		lo := groupPrefix(p, id)
		if err := b.DeleteRange(lo, prefixEnd(lo), nil); err != nil {
			return fmt.Errorf("raftstore: drop group %s: %w", id, err)
		}
	}
	if err := b.Commit(s.wo); err != nil {
		return fmt.Errorf("raftstore: drop group %s: %w", id, err)
	}
	if g != nil {
		g.dropped.Store(true)
		delete(s.groups, id)
		s.entryCache.removeGroup(g)
	}
	return nil
}

// Stats returns counters since Open.
func (s *Store) Stats() Stats {
	return Stats{
		Syncs:        s.fs.WALSyncs(),
		StoreCalls:   s.stores.Load(),
		Entries:      s.entries.Load(),
		EntryBytes:   s.entryBytes.Load(),
		WALBytes:     s.fs.WALBytes(),
		BytesWritten: s.fs.BytesWritten(),
		CacheHits:    s.cacheHits.Load(),
		CacheMisses:  s.cacheMisses.Load(),
		CacheBytes:   s.entryCache.cachedBytes(),
	}
}

// get calls fn with the value of key, which fn must not keep, or returns
// pebble.ErrNotFound.
func (s *Store) get(key []byte, fn func(v []byte) error) error {
	v, closer, err := s.db.Get(key)
	if err != nil {
		return err
	}
	err = fn(v)
	if cerr := closer.Close(); err == nil {
		err = cerr
	}
	return err
}

// isNotFound reports whether err is Pebble's not-found error.
func isNotFound(err error) bool { return errors.Is(err, pebble.ErrNotFound) }
