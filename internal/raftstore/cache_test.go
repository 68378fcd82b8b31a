package raftstore

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
)

// TestEntryCache checks which reads the entry cache answers: the newest
// entries of all groups within the budget, oldest out first, never an
// entry that was deleted or overwritten.
func TestEntryCache(t *testing.T) {
	size := entrySize(entry(1, 1))
	s, err := Open("db", Options{FS: vfs.NewMem(), EntryCacheBytes: 4 * size})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, b := s.Group("a"), s.Group("b")

	// hit reads index from g and reports whether the cache answered, after
	// checking the entry against want.
	hit := func(g *Group, index uint64, want *raft.Log) bool {
		t.Helper()
		before := s.Stats().CacheHits
		var got raft.Log
		if err := g.GetLog(index, &got); err != nil {
			t.Fatalf("group %s: GetLog(%d): %v", g.ID(), index, err)
		}
		if diff := cmp.Diff(*want, got, logOpts); diff != "" {
			t.Fatalf("group %s: GetLog(%d) (-want +got):\n%s", g.ID(), index, diff)
		}
		return s.Stats().CacheHits > before
	}

	aLogs := entries(1, 3, 1)
	mustStore(t, a, aLogs)
	for _, l := range aLogs {
		if !hit(a, l.Index, l) {
			t.Errorf("entry %d of a not cached", l.Index)
		}
	}
	if got := s.Stats().CacheBytes; got != 3*size {
		t.Errorf("cache holds %d bytes, want %d", got, 3*size)
	}

	// Two entries of b push the oldest of a out.
	bLogs := entries(10, 11, 1)
	mustStore(t, b, bLogs)
	if hit(a, 1, aLogs[0]) {
		t.Error("a's entry 1 still cached beyond the budget")
	}
	for _, l := range append(aLogs[1:], bLogs...) {
		if !hit(groupOf(a, b, l.Index), l.Index, l) {
			t.Errorf("entry %d not cached", l.Index)
		}
	}

	// A suffix overwritten in a later term replaces the cached entries.
	if err := a.DeleteRange(3, 3); err != nil {
		t.Fatal(err)
	}
	newer := entries(3, 4, 2)
	mustStore(t, a, newer)
	for _, l := range newer {
		if !hit(a, l.Index, l) {
			t.Errorf("overwritten entry %d not cached", l.Index)
		}
	}

	// Truncating the front drops cached entries from it.
	if err := a.DeleteRange(1, 3); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := a.GetLog(2, &l); err == nil {
		t.Errorf("GetLog(2) after DeleteRange = %+v", l)
	}

	// Stores that do not follow the cached entries (a snapshot's gap)
	// start the group's cache afresh.
	gap := entries(100, 100, 3)
	mustStore(t, a, gap)
	if !hit(a, 100, gap[0]) {
		t.Error("entry after a gap not cached")
	}
	if hit(a, 4, newer[1]) {
		t.Error("entry before a gap still cached")
	}

	if err := s.DropGroup("b"); err != nil {
		t.Fatal(err)
	}
	if err := s.Group("b").GetLog(10, &l); err == nil {
		t.Errorf("GetLog on a dropped group's new incarnation = %+v", l)
	}
	if got := s.Stats().CacheBytes; got > 4*size || got < 0 {
		t.Errorf("cache holds %d bytes, budget %d", got, 4*size)
	}
}

func groupOf(a, b *Group, index uint64) *Group {
	if index >= 10 {
		return b
	}
	return a
}

// TestEntryCacheRefill checks that an entry read from Pebble after it left
// the cache is cached again, as an idle group's last entry is: raft's
// replication reads it every CommitTimeout.
func TestEntryCacheRefill(t *testing.T) {
	size := entrySize(entry(1, 1))
	s, err := Open("db", Options{FS: vfs.NewMem(), EntryCacheBytes: 2 * size})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	idle, busy := s.Group("idle"), s.Group("busy")
	mustStore(t, idle, entries(1, 1, 1))
	mustStore(t, busy, entries(10, 11, 1))
	read := func(g *Group, index uint64) {
		t.Helper()
		var l raft.Log
		if err := g.GetLog(index, &l); err != nil || l.Index != index {
			t.Fatalf("GetLog(%d) = %+v, %v", index, l, err)
		}
	}
	read(idle, 1)
	read(idle, 1)
	if st := s.Stats(); st.CacheMisses != 1 || st.CacheHits != 1 {
		t.Errorf("after two reads of an evicted entry: %d hits, %d misses; want 1 and 1", st.CacheHits, st.CacheMisses)
	}
	// The refill pushed busy's oldest entry out; an entry before a group's
	// cached ones is not cached again, as that would leave a gap.
	read(busy, 10)
	read(busy, 10)
	if st := s.Stats(); st.CacheMisses != 3 {
		t.Errorf("%d misses after reading busy's entry 10 twice, want 3", st.CacheMisses)
	}
}
