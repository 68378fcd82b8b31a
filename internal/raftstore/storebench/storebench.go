// Package storebench measures raft log stores under the write and read
// pattern of a node's partition raft groups. It is shared by the benchmarks
// of package raftstore (its Pebble store and raft-boltdb) and of the walbench
// module (raft-wal, kept out of the main module's dependencies), so every
// store is driven by the same code.
package storebench

import (
	"bufio"
	"bytes"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// Stores is one node's raft log stores under measurement: one per group.
type Stores struct {
	// Logs has one log store per raft group.
	Logs []raft.LogStore
	// Syncs, if not nil, counts the fsyncs the stores made since they were
	// opened.
	Syncs func() int64
	// Close closes every store.
	Close func() error
}

// Open opens stores for groups raft groups in dir, which is empty.
type Open func(dir string, groups int) (Stores, error)

// StoreLogs measures appends: each of groups goroutines appends entries of
// size bytes to its own group, one entry per StoreLogs call, as raft's
// leader and followers do for large entries. b.N counts entries over all
// groups. Besides MB/s it reports entries/s, and fsyncs/s and entries/fsync
// when the stores count their fsyncs, and disk-B/B, the bytes the process
// caused to be written to disk per entry byte (Linux only). If keep is
// above 0, each group truncates its log to the last keep entries every keep
// appends, as raft does after a snapshot, and disk-MB reports the store's
// files on disk at the end.
func StoreLogs(b *testing.B, open Open, groups, size, keep int) {
	dir := b.TempDir()
	s, err := open(dir, groups)
	if err != nil {
		b.Fatal(err)
	}
	data := randomBytes(size)
	b.SetBytes(int64(size))
	var syncs0 int64
	if s.Syncs != nil {
		syncs0 = s.Syncs()
	}
	disk0, diskOK := diskWriteBytes()

	b.ResetTimer()
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Bool
	for _, ls := range s.Logs {
		wg.Go(func() {
			for index := uint64(1); next.Add(1) <= int64(b.N); index++ {
				l := &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: time.Now()}
				if err := ls.StoreLogs([]*raft.Log{l}); err != nil {
					b.Error(err)
					failed.Store(true)
					return
				}
				if keep > 0 && index%uint64(keep) == 0 && index > uint64(keep) {
					if err := ls.DeleteRange(1, index-uint64(keep)); err != nil {
						b.Error(err)
						failed.Store(true)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if failed.Load() {
		return
	}

	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(b.N)/sec, "entries/s")
	if s.Syncs != nil {
		syncs := s.Syncs() - syncs0
		b.ReportMetric(float64(syncs)/sec, "fsyncs/s")
		if syncs > 0 {
			b.ReportMetric(float64(b.N)/float64(syncs), "entries/fsync")
		}
	}
	if disk1, ok := diskWriteBytes(); ok && diskOK {
		b.ReportMetric(float64(disk1-disk0)/float64(b.N*size), "disk-B/B")
	}
	if keep > 0 {
		b.ReportMetric(float64(dirSize(dir))/(1<<20), "disk-MB")
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
}

// GetLog measures reads of entries just written, as raft's replication
// reads them back from the leader's store to send to followers: each group
// holds perGroup entries of size bytes, and one goroutine per group reads
// them in order, round and round. b.N counts entries read over all groups.
func GetLog(b *testing.B, open Open, groups, size, perGroup int) {
	dir := b.TempDir()
	s, err := open(dir, groups)
	if err != nil {
		b.Fatal(err)
	}
	data := randomBytes(size)
	for _, ls := range s.Logs {
		for i := 1; i <= perGroup; i++ {
			l := &raft.Log{Index: uint64(i), Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: time.Now()}
			if err := ls.StoreLogs([]*raft.Log{l}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.SetBytes(int64(size))

	b.ResetTimer()
	var next atomic.Int64
	var wg sync.WaitGroup
	for _, ls := range s.Logs {
		wg.Go(func() {
			var l raft.Log
			for i := 0; next.Add(1) <= int64(b.N); i++ {
				index := uint64(i%perGroup + 1)
				if err := ls.GetLog(index, &l); err != nil {
					b.Error(err)
					return
				}
				if len(l.Data) != size {
					b.Errorf("GetLog(%d): %d bytes, want %d", index, len(l.Data), size)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
}

// randomBytes returns n incompressible bytes.
func randomBytes(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
	return p
}

// diskWriteBytes returns the bytes this process caused to be written to
// storage (write_bytes in /proc/self/io), or false where that is not kept.
func diskWriteBytes() (int64, bool) {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("write_bytes: ")); ok {
			n, err := strconv.ParseInt(string(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
