package raftstore

import (
	"sync"

	"github.com/hashicorp/raft"
)

// entryCache keeps the newest entries of every group of a Store in memory,
// as StoreLogs was given them, up to a byte budget shared by all groups:
// the first entry in is the first out. raft reads most entries right after
// it stores them, on a leader to replicate them to each follower and on a
// follower to apply them; from the cache those reads neither touch Pebble
// nor decode and copy the entry.
//
// A cached entry shares its Data and Extensions with the raft.Log it was
// stored from and with every raft.Log GetLog fills from it: raft never
// changes an entry's bytes once it has stored it (its own LogCache shares
// them the same way), and neither may the state machine.
type entryCache struct {
	mu     sync.Mutex
	budget int64
	bytes  int64
	seq    uint64     // insertion counter
	fifo   []cacheRef // cached entries of all groups, oldest first, from head
	head   int
}

// cacheRef is one entry in the cache's insertion order. It is stale when
// the entry left its group's cache before its turn (DeleteRange, an
// overwrite), which its sequence number tells.
type cacheRef struct {
	g   *Group
	seq uint64
}

// groupCache is one group's cached entries: consecutive indexes from
// first. It is guarded by the Store's entryCache.mu.
type groupCache struct {
	first   uint64
	entries []cachedEntry
	// gen counts the group's writes (StoreLogs, DeleteRange), so that an
	// entry read from Pebble is cached only if no write came in between.
	gen uint64
}

type cachedEntry struct {
	log  raft.Log
	seq  uint64
	size int64
}

// entryOverhead is what a cached entry costs beyond its bytes.
const entryOverhead = 128

func entrySize(l *raft.Log) int64 {
	return int64(len(l.Data)+len(l.Extensions)) + entryOverhead
}

// get fills l from g's cached entry index and reports whether there was
// one. On a miss it returns the group's write count, for fill.
func (c *entryCache) get(g *Group, index uint64, l *raft.Log) (gen uint64, ok bool) {
	if c.budget <= 0 {
		return 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	gc := &g.cache
	if index < gc.first || index-gc.first >= uint64(len(gc.entries)) {
		return gc.gen, false
	}
	*l = gc.entries[index-gc.first].log
	return 0, true
}

// fill caches l, which GetLog read from Pebble after get missed and
// returned gen, if the group was not written since and l does not leave a
// gap in its cached entries. GetLog fills only the group's last entry,
// which raft reads over and over while the group is idle: a leader's
// replication names the entry before the ones it sends, and an idle leader
// sends each follower an empty append, naming the last entry, every
// CommitTimeout. Once the entries of busier groups have pushed that entry
// out, each of those reads would copy it out of Pebble again.
func (c *entryCache) fill(g *Group, gen uint64, l *raft.Log) {
	if c.budget <= 0 {
		return
	}
	size := entrySize(l)
	if size > c.budget {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	gc := &g.cache
	if gc.gen != gen {
		return
	}
	switch n := uint64(len(gc.entries)); {
	case n == 0:
		gc.first = l.Index
	case l.Index != gc.first+n:
		return
	}
	c.pushLocked(gc, g, l, size)
	for c.bytes > c.budget {
		c.evictLocked()
	}
}

// pushLocked appends l to gc, which it follows, as the newest entry of
// the cache.
func (c *entryCache) pushLocked(gc *groupCache, g *Group, l *raft.Log, size int64) {
	c.seq++
	gc.entries = append(gc.entries, cachedEntry{log: *l, seq: c.seq, size: size})
	c.fifo = append(c.fifo, cacheRef{g: g, seq: c.seq})
	c.bytes += size
}

// add caches logs, just stored in g, and evicts the oldest entries of any
// group beyond the budget. Entries that do not follow g's cached ones
// replace them.
func (c *entryCache) add(g *Group, logs []*raft.Log) {
	if c.budget <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	gc := &g.cache
	gc.gen++
	for _, l := range logs {
		size := entrySize(l)
		if size > c.budget {
			// Larger than the whole cache: not cached, and what follows
			// it no longer follows cached entries.
			c.dropLocked(gc, 0, len(gc.entries))
			continue
		}
		if n := len(gc.entries); n == 0 || l.Index != gc.first+uint64(n) {
			if n > 0 && l.Index > gc.first && l.Index < gc.first+uint64(n) {
				// An overwrite: raft deletes a conflicting suffix before
				// it stores the new one, but keep the cache right even
				// if it did not.
				c.dropLocked(gc, int(l.Index-gc.first), n)
			} else {
				c.dropLocked(gc, 0, n)
				gc.first = l.Index
			}
		}
		c.pushLocked(gc, g, l, size)
	}
	for c.bytes > c.budget {
		c.evictLocked()
	}
}

// evictLocked removes the oldest entry of the cache, skipping stale refs.
func (c *entryCache) evictLocked() {
	defer func() {
		if c.head > 1024 && c.head > len(c.fifo)/2 {
			n := copy(c.fifo, c.fifo[c.head:])
			clear(c.fifo[n:])
			c.fifo, c.head = c.fifo[:n], 0
		}
	}()
	for c.head < len(c.fifo) {
		ref := c.fifo[c.head]
		c.fifo[c.head] = cacheRef{}
		c.head++
		gc := &ref.g.cache
		// A group's entries are in insertion order, so a live ref is
		// always to its group's first cached entry.
		if len(gc.entries) > 0 && gc.entries[0].seq == ref.seq {
			c.dropLocked(gc, 0, 1)
			return
		}
	}
}

// remove drops g's cached entries from min to max, inclusive.
func (c *entryCache) remove(g *Group, min, max uint64) {
	if c.budget <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	gc := &g.cache
	gc.gen++
	n := uint64(len(gc.entries))
	if n == 0 || max < gc.first || min >= gc.first+n {
		return
	}
	lo := uint64(0)
	if min > gc.first {
		lo = min - gc.first
	}
	hi := n
	if max-gc.first < n {
		hi = max - gc.first + 1
	}
	if lo > 0 && hi < n {
		// A hole in the middle: keep the entries before it.
		hi = n
	}
	c.dropLocked(gc, int(lo), int(hi))
}

// dropLocked removes gc's entries [lo, hi), which is a prefix or a suffix
// of them; their refs in fifo go stale.
func (c *entryCache) dropLocked(gc *groupCache, lo, hi int) {
	if lo >= hi {
		return
	}
	for i := lo; i < hi; i++ {
		c.bytes -= gc.entries[i].size
	}
	switch {
	case hi == len(gc.entries):
		clear(gc.entries[lo:hi])
		gc.entries = gc.entries[:lo]
	case lo == 0:
		clear(gc.entries[:hi])
		gc.entries = gc.entries[hi:]
		gc.first += uint64(hi)
	default:
		panic("raftstore: cache drop in the middle of a group's entries")
	}
	if len(gc.entries) == 0 {
		gc.entries = nil
	}
}

// removeGroup drops every cached entry of g.
func (c *entryCache) removeGroup(g *Group) {
	if c.budget <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	g.cache.gen++
	c.dropLocked(&g.cache, 0, len(g.cache.entries))
}

// cachedBytes returns the bytes the cache holds.
func (c *entryCache) cachedBytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}
