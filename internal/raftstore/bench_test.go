package raftstore

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb"

	"github.com/runnel-dev/runnel/internal/raftstore/storebench"
)

// The benchmarks compare raft log stores for a node's partition raft groups:
// one shared Store (Pebble), and one raft-boltdb file per group. The
// walbench module measures one raft-wal per group with the same driver.
// bench.md beside this file has the figures and the commands.

// openShared opens one Store for every group.
func openShared(opts Options) storebench.Open {
	return func(dir string, groups int) (storebench.Stores, error) {
		s, err := Open(dir, opts)
		if err != nil {
			return storebench.Stores{}, err
		}
		st := storebench.Stores{
			Syncs: func() int64 { return s.Stats().Syncs },
			Close: s.Close,
		}
		for g := range groups {
			st.Logs = append(st.Logs, s.Group(fmt.Sprintf("topic/%d", g)))
		}
		return st, nil
	}
}

// openBoltPerGroup opens one raft-boltdb file per group. raft-boltdb does
// not count its fsyncs: each StoreLogs commit makes two (pages, then meta
// page).
func openBoltPerGroup(dir string, groups int) (storebench.Stores, error) {
	var stores []*raftboltdb.BoltStore
	closeAll := func() error {
		var errs []error
		for _, s := range stores {
			errs = append(errs, s.Close())
		}
		return errors.Join(errs...)
	}
	st := storebench.Stores{Close: closeAll}
	for g := range groups {
		s, err := raftboltdb.NewBoltStore(filepath.Join(dir, fmt.Sprintf("group-%d.db", g)))
		if err != nil {
			closeAll()
			return storebench.Stores{}, err
		}
		stores = append(stores, s)
		st.Logs = append(st.Logs, s)
	}
	return st, nil
}

var benchStores = []struct {
	name string
	open storebench.Open
}{
	{"pebble", openShared(Options{})},
	{"pebble-novsep", openShared(Options{noValueSeparation: true})},
	{"bolt", openBoltPerGroup},
}

var benchSizes = []struct {
	name string
	size int
}{
	{"16KiB", 16 << 10},
	{"1MiB", 1 << 20},
}

// BenchmarkStoreLogs appends one entry per call from 1 and 6 groups at
// once, with fsync, as a node's partition leaders and followers do.
func BenchmarkStoreLogs(b *testing.B) {
	skipBoltUnderRace(b)
	for _, size := range benchSizes {
		for _, groups := range []int{1, 6} {
			for _, st := range benchStores {
				b.Run(fmt.Sprintf("size=%s/groups=%d/store=%s", size.name, groups, st.name), func(b *testing.B) {
					storebench.StoreLogs(b, st.open, groups, size.size, 0)
				})
			}
		}
	}
}

// BenchmarkStoreLogsTruncate is BenchmarkStoreLogs for 1 MiB entries with
// raft's truncation after snapshots: each group keeps its last 64 entries,
// or its last 8, which with 6 groups fit in one Pebble memtable, so that
// truncated entries are dropped before they are flushed. disk-MB is what the
// store's files take at the end.
func BenchmarkStoreLogsTruncate(b *testing.B) {
	skipBoltUnderRace(b)
	for _, keep := range []int{64, 8} {
		for _, groups := range []int{1, 6} {
			for _, st := range benchStores {
				b.Run(fmt.Sprintf("size=1MiB/groups=%d/keep=%d/store=%s", groups, keep, st.name), func(b *testing.B) {
					storebench.StoreLogs(b, st.open, groups, 1<<20, keep)
				})
			}
		}
	}
}

// BenchmarkGetLog reads back entries just written, as raft's replication
// does on a leader, from 1 and 6 groups at once: 32 MiB of entries per
// group. The Pebble stores run without their entry cache, so that they read
// from Pebble; pebble-cached reads entries that fit in the cache (48 MiB in
// all), as raft mostly does.
func BenchmarkGetLog(b *testing.B) {
	skipBoltUnderRace(b)
	nocache := Options{EntryCacheBytes: -1}
	novsep := nocache
	novsep.noValueSeparation = true
	stores := []struct {
		name   string
		open   storebench.Open
		cached bool
	}{
		{"pebble", openShared(nocache), false},
		{"pebble-novsep", openShared(novsep), false},
		{"bolt", openBoltPerGroup, false},
		{"pebble-cached", openShared(Options{}), true},
	}
	for _, size := range benchSizes {
		for _, groups := range []int{1, 6} {
			for _, st := range stores {
				perGroup := (32 << 20) / size.size
				if st.cached {
					perGroup = min(perGroup, (48<<20)/(groups*size.size))
				}
				b.Run(fmt.Sprintf("size=%s/groups=%d/store=%s", size.name, groups, st.name), func(b *testing.B) {
					storebench.GetLog(b, st.open, groups, size.size, perGroup)
				})
			}
		}
	}
}

func skipBoltUnderRace(b *testing.B) {
	if raceEnabled {
		b.Skip("boltdb/bolt v1.3.1 fails the race detector's pointer checks; see race_test.go")
	}
}

var _ raft.LogStore = (*raftboltdb.BoltStore)(nil)
