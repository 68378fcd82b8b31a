package raftstore

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// Group is the raft log and stable store of one raft group in a Store. It
// is safe for concurrent use, as raft requires: raft appends from its main
// loop while replication, snapshots and metrics read.
type Group struct {
	s            *Store
	id           string
	logPrefix    []byte // prefixLog, id
	stablePrefix []byte // prefixStable, id
	dropped      atomic.Bool

	// writeMu orders the group's writes (StoreLogs, DeleteRange, Set,
	// SetUint64) and DropGroup; it is held across each commit so the cached
	// indexes change in the order the writes reach disk.
	writeMu sync.Mutex

	// mu guards the cached indexes. Readers take it only briefly, never
	// across a commit.
	mu          sync.Mutex
	loaded      bool
	first, last uint64

	// cache is the group's part of the Store's entry cache, guarded by
	// the cache's mutex.
	cache groupCache
}

var (
	_ raft.LogStore    = (*Group)(nil)
	_ raft.StableStore = (*Group)(nil)
)

func newGroup(s *Store, id string) *Group {
	return &Group{
		s:            s,
		id:           id,
		logPrefix:    groupPrefix(prefixLog, id),
		stablePrefix: groupPrefix(prefixStable, id),
	}
}

// ID returns the group's id.
func (g *Group) ID() string { return g.id }

// acquire takes the store's read lock for an operation on the group;
// release with g.s.mu.RUnlock.
func (g *Group) acquire() error {
	if err := g.s.acquire(); err != nil {
		return err
	}
	if g.dropped.Load() {
		g.s.mu.RUnlock()
		return ErrDropped
	}
	return nil
}

// FirstIndex returns the index of the group's first log entry, or 0 if the
// log is empty. It reads a cached value.
func (g *Group) FirstIndex() (uint64, error) {
	if err := g.acquire(); err != nil {
		return 0, err
	}
	defer g.s.mu.RUnlock()
	first, _, err := g.indexes()
	return first, err
}

// LastIndex returns the index of the group's last log entry, or 0 if the
// log is empty. It reads a cached value.
func (g *Group) LastIndex() (uint64, error) {
	if err := g.acquire(); err != nil {
		return 0, err
	}
	defer g.s.mu.RUnlock()
	_, last, err := g.indexes()
	return last, err
}

// indexes returns the first and last index, reading them from disk with one
// iterator on first use. The caller holds the store's read lock.
func (g *Group) indexes() (first, last uint64, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.loaded {
		if err := g.loadLocked(); err != nil {
			return 0, 0, err
		}
	}
	return g.first, g.last, nil
}

// loadLocked reads the first and last index from disk.
func (g *Group) loadLocked() error {
	it, err := g.s.db.NewIter(&pebble.IterOptions{
		LowerBound: g.logPrefix,
		UpperBound: prefixEnd(g.logPrefix),
	})
	if err != nil {
		return fmt.Errorf("raftstore: group %s: load indexes: %w", g.id, err)
	}
	var first, last uint64
	if it.First() {
		var ok bool
		if first, ok = logIndex(g.logPrefix, it.Key()); !ok {
			it.Close()
			return corruptf(g.id, "first log key", "%x", it.Key())
		}
		it.Last()
		if last, ok = logIndex(g.logPrefix, it.Key()); !ok {
			it.Close()
			return corruptf(g.id, "last log key", "%x", it.Key())
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("raftstore: group %s: load indexes: %w", g.id, err)
	}
	g.first, g.last, g.loaded = first, last, true
	return nil
}

// GetLog reads entry index into l. It returns raft.ErrLogNotFound if the
// group has no such entry. An entry still in the entry cache shares its
// Data and Extensions with the raft.Log it was stored from; the caller must
// not change them.
func (g *Group) GetLog(index uint64, l *raft.Log) error {
	if err := g.acquire(); err != nil {
		return err
	}
	defer g.s.mu.RUnlock()
	gen, ok := g.s.entryCache.get(g, index, l)
	if ok {
		g.s.cacheHits.Add(1)
		return nil
	}
	g.s.cacheMisses.Add(1)
	err := g.s.get(logKey(g.logPrefix, index), func(v []byte) error {
		if err := decode(v, l); err != nil {
			return corruptf(g.id, fmt.Sprintf("log %d", index), "%v", err)
		}
		l.Index = index
		return nil
	})
	if isNotFound(err) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return fmt.Errorf("raftstore: group %s: get log %d: %w", g.id, index, err)
	}
	// A leader names an idle group's last entry in the empty append it
	// sends each follower every CommitTimeout: keep that one at hand once
	// read. decode copied it, so the cache may share it with l. Older
	// entries, read to catch a follower up, would only push out the
	// newest entries of busier groups.
	if _, last, err := g.indexes(); err == nil && index == last {
		g.s.entryCache.fill(g, gen, l)
	}
	return nil
}

// StoreLog stores one entry; see StoreLogs.
func (g *Group) StoreLog(l *raft.Log) error {
	return g.StoreLogs([]*raft.Log{l})
}

// StoreLogs stores entries in one Pebble batch and returns once it is
// durable. An entry replaces any entry with the same index. Entries need
// not follow the last index (raft leaves a gap after restoring a snapshot).
func (g *Group) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	if err := g.acquire(); err != nil {
		return err
	}
	defer g.s.mu.RUnlock()
	g.writeMu.Lock()
	defer g.writeMu.Unlock()
	if g.dropped.Load() {
		return ErrDropped
	}
	if _, _, err := g.indexes(); err != nil {
		return err
	}

	keyLen := len(g.logPrefix) + 8
	size := 0
	for _, l := range logs {
		size += keyLen + encodedLen(l) + 2*binary.MaxVarintLen32 + 1
	}
	b := g.s.db.NewBatchWithSize(size)
	defer b.Close()
	lo, hi := logs[0].Index, logs[0].Index
	var bytes int64
	for _, l := range logs {
		n := encodedLen(l)
		op := b.SetDeferred(keyLen, n)
		copy(op.Key, g.logPrefix)
		binary.BigEndian.PutUint64(op.Key[len(g.logPrefix):], l.Index)
		encode(op.Value, l)
		if err := op.Finish(); err != nil {
			return fmt.Errorf("raftstore: group %s: store log %d: %w", g.id, l.Index, err)
		}
		lo, hi = min(lo, l.Index), max(hi, l.Index)
		bytes += int64(n)
	}
	// Entries being overwritten leave the cache before the commit, so
	// that it never holds what the disk no longer does.
	g.s.entryCache.remove(g, lo, hi)
	if err := b.Commit(g.s.wo); err != nil {
		return fmt.Errorf("raftstore: group %s: store logs %d-%d: %w", g.id, lo, hi, err)
	}
	g.s.entryCache.add(g, logs)

	g.mu.Lock()
	if g.first == 0 || lo < g.first {
		g.first = lo
	}
	g.last = max(g.last, hi)
	g.mu.Unlock()
	g.s.stores.Add(1)
	g.s.entries.Add(int64(len(logs)))
	g.s.entryBytes.Add(bytes)
	return nil
}

// DeleteRange deletes the entries from min to max, inclusive, with one
// Pebble range delete, and returns once it is durable.
func (g *Group) DeleteRange(min, max uint64) error {
	if min > max {
		return nil
	}
	if err := g.acquire(); err != nil {
		return err
	}
	defer g.s.mu.RUnlock()
	g.writeMu.Lock()
	defer g.writeMu.Unlock()
	if g.dropped.Load() {
		return ErrDropped
	}
	first, last, err := g.indexes()
	if err != nil {
		return err
	}
	if first == 0 || max < first || min > last {
		return nil // nothing to delete
	}
	g.s.entryCache.remove(g, min, max)
	b := g.s.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(logKey(g.logPrefix, min), logKeyEnd(g.logPrefix, max), nil); err != nil {
		return fmt.Errorf("raftstore: group %s: delete logs %d-%d: %w", g.id, min, max, err)
	}
	if err := b.Commit(g.s.wo); err != nil {
		return fmt.Errorf("raftstore: group %s: delete logs %d-%d: %w", g.id, min, max, err)
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	if min <= first || max >= last {
		// An end moved; entries need not be contiguous, so seek to
		// find where.
		return g.loadLocked()
	}
	return nil
}

// Set stores val under key in the group's stable store and returns once it
// is durable.
func (g *Group) Set(key, val []byte) error {
	if err := g.acquire(); err != nil {
		return err
	}
	defer g.s.mu.RUnlock()
	g.writeMu.Lock()
	defer g.writeMu.Unlock()
	if g.dropped.Load() {
		return ErrDropped
	}
	if err := g.s.db.Set(stableKey(g.stablePrefix, key), val, g.s.wo); err != nil {
		return fmt.Errorf("raftstore: group %s: set %q: %w", g.id, key, err)
	}
	return nil
}

// Get returns a copy of the value stored under key, or ErrKeyNotFound if
// the key was never set. A key set to an empty value reads back as an
// empty, non-nil slice.
func (g *Group) Get(key []byte) ([]byte, error) {
	if err := g.acquire(); err != nil {
		return nil, err
	}
	defer g.s.mu.RUnlock()
	var val []byte
	err := g.s.get(stableKey(g.stablePrefix, key), func(v []byte) error {
		val = append([]byte{}, v...)
		return nil
	})
	if isNotFound(err) {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("raftstore: group %s: get %q: %w", g.id, key, err)
	}
	return val, nil
}

// SetUint64 stores val under key, as 8 big-endian bytes, and returns once
// it is durable.
func (g *Group) SetUint64(key []byte, val uint64) error {
	return g.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 returns the value SetUint64 stored under key. For a key never
// set it returns 0 and ErrKeyNotFound, as raft-boltdb does; raft treats
// that as 0.
func (g *Group) GetUint64(key []byte) (uint64, error) {
	v, err := g.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, corruptf(g.id, fmt.Sprintf("key %q", key), "%d bytes, want 8", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}
