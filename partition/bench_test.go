package partition_test

import (
	"path/filepath"
	"testing"
	"time"

	raftboltdb "github.com/hashicorp/raft-boltdb"
	"github.com/runnel-dev/runnel/internal/raftstore"
	"github.com/runnel-dev/runnel/partition"
	"github.com/runnel-dev/runnel/record"
)

// BenchmarkReplicaAppend measures the replicated append path: three
// replicas over InmemTransport, 1 MiB batches of 100-byte records proposed
// from one goroutine with up to 8 in flight, each committed by raft and
// applied to every replica's Pebble log. The partition logs run without
// fsync, as in a cluster; the raft log is in memory ("inmem"), in
// raft-boltdb ("bolt") or in a raftstore.Store of each node's own, as a
// broker's ("raftstore"; "raftstore-nocache" without its entry cache),
// fsynced on every group commit.
//
//	go test -run '^$' -bench ReplicaAppend -benchtime 200x ./partition/
func BenchmarkReplicaAppend(b *testing.B) {
	for _, stores := range []string{"inmem", "bolt", "raftstore", "raftstore-nocache"} {
		b.Run(stores, func(b *testing.B) {
			if stores == "bolt" && raceEnabled {
				b.Skip("boltdb/bolt fails checkptr under the race detector")
			}
			benchAppend(b, stores)
		})
	}
}

func benchAppend(b *testing.B, stores string) {
	c := newCluster(b, 3, func(c *partition.ReplicaConfig) {
		// Production timing: the test timing's 50 ms lease is too short
		// for 1 MiB entries on a loaded machine.
		c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout, c.CommitTimeout = 0, 0, 0, 0
		// Keep raft's in-memory log short.
		c.SnapshotThreshold = 32
		c.TrailingLogs = 32
		c.SnapshotInterval = 100 * time.Millisecond
	})
	var syncs func() int64
	if stores != "inmem" {
		// Move every replica onto disk stores, from an empty log.
		for _, nd := range c.nodes {
			c.stop(nd)
		}
		var servers []partition.Server
		var rs []*raftstore.Store
		for _, nd := range c.nodes {
			switch stores {
			case "bolt":
				s, err := raftboltdb.NewBoltStore(filepath.Join(b.TempDir(), "raft.bolt"))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() {
					c.close() // the replicas first
					s.Close()
				})
				nd.logs, nd.stable = s, s
			case "raftstore", "raftstore-nocache":
				opts := raftstore.Options{Logger: testLogger()}
				if stores == "raftstore-nocache" {
					opts.EntryCacheBytes = -1
				}
				s, err := raftstore.Open(b.TempDir(), opts)
				if err != nil {
					b.Fatal(err)
				}
				rs = append(rs, s)
				g := s.Group("1/0")
				nd.logs, nd.stable = g, g
			}
			servers = append(servers, server(nd))
		}
		if rs != nil {
			b.Cleanup(func() {
				c.close() // the replicas first
				for _, s := range rs {
					s.Close()
				}
			})
			syncs = func() int64 {
				var n int64
				for _, s := range rs {
					n += s.Stats().Syncs
				}
				return n
			}
		}
		for _, nd := range c.nodes {
			c.start(nd, servers)
		}
		c.connectAll()
	}
	l := c.leader()

	var bl record.Builder
	rec := record.Record{Key: []byte("key-0001"), Value: make([]byte, 84), Timestamp: 1}
	for bl.Len() < 1<<20 {
		bl.Append(&rec)
	}
	batch := append(record.Batch(nil), bl.Build()...)
	b.SetBytes(int64(len(batch)))
	var syncs0 int64
	if syncs != nil {
		syncs0 = syncs()
	}
	b.ResetTimer()

	const window = 8
	var inflight []partition.Pending
	for range b.N {
		if len(inflight) == window {
			if err := inflight[0].Wait(); err != nil {
				b.Fatal(err)
			}
			inflight = inflight[1:]
		}
		pd, err := l.r.Append(batch, partition.AcksAll)
		if err != nil {
			b.Fatal(err)
		}
		inflight = append(inflight, pd)
	}
	for _, pd := range inflight {
		if err := pd.Wait(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*batch.Count())/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(len(batch))/float64(batch.Count()), "B/record")
	if syncs != nil {
		b.ReportMetric(float64(b.N*batch.Count()*len(c.nodes))/float64(syncs()-syncs0), "records/fsync")
	}
	// Followers catch up before the cluster closes.
	waitFor(b, "followers to catch up", func() bool {
		for _, nd := range c.nodes {
			if nd.log.End() != l.log.End() {
				return false
			}
		}
		return true
	})
}
