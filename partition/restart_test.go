package partition_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"
	raftboltdb "github.com/hashicorp/raft-boltdb"
	"github.com/runnel-dev/runnel/partition"
)

// writeN appends n one-record batches named tag-i on the leader.
func writeN(t *testing.T, c *cluster, tag string, n int) {
	t.Helper()
	l := c.leader()
	var pending []partition.Pending
	for i := range n {
		pd, err := l.r.Append(batchOf(fmt.Sprint(tag, "-", i)), partition.AcksAll)
		if err != nil {
			t.Fatal(err)
		}
		pending = append(pending, pd)
	}
	for _, pd := range pending {
		if err := pd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
}

// checkOnce checks that every value in l's log is there once.
func checkOnce(t *testing.T, nd *node, want int) {
	t.Helper()
	seen := make(map[string]int)
	for _, v := range values(t, nd.log) {
		seen[v]++
	}
	for v, n := range seen {
		if n != 1 {
			t.Errorf("%s: %q written %d times", nd.id, v, n)
		}
	}
	if len(seen) != want {
		t.Errorf("%s: %d distinct records, want %d", nd.id, len(seen), want)
	}
}

// TestRestart restarts a follower, raft and log store both, and checks that
// raft's replay of its log writes nothing twice: entries up to the log's
// applied index are skipped, the newest snapshot is not restored, and the
// entries after it are applied.
func TestRestart(t *testing.T) {
	for _, stores := range []string{"inmem", "bolt"} {
		t.Run(stores, func(t *testing.T) {
			if stores == "bolt" && raceEnabled {
				t.Skip("boltdb/bolt fails checkptr under the race detector")
			}
			c := newCluster(t, 3, nil)
			f := c.followers(c.leader())[0]
			if stores == "bolt" {
				// Move the follower onto bolt stores before anything is
				// written: the leader replicates its whole log to them.
				c.stop(f)
				openBolt(t, f)
				c.restart(f)
			}
			writeN(t, c, "a", 20)
			c.converge(c.leader())
			if err := f.r.Snapshot(); err != nil {
				t.Fatal(err)
			}
			snapIndex := f.r.Stats().LastSnapshotIndex
			writeN(t, c, "b", 10)
			c.converge(c.leader())
			applied := f.log.Applied()
			if applied <= snapIndex {
				t.Fatalf("log applied %d, snapshot at %d: nothing to skip after a restart", applied, snapIndex)
			}
			before := logBatches(t, f.log)

			// Stop the replica and close every store, as a process exit.
			c.stop(f)
			if err := f.store.Close(); err != nil {
				t.Fatal(err)
			}
			if stores == "bolt" {
				closeBolt(t, f)
				openBolt(t, f)
			}
			c.openStore(f)
			if got := f.log.Applied(); got != applied {
				t.Fatalf("applied index %d after reopening the log, want %d", got, applied)
			}
			c.restart(f)
			st := f.r.Stats()
			if st.SnapshotsRestored != 0 {
				t.Fatalf("the snapshot was restored on start")
			}
			waitFor(t, "raft to replay its log", func() bool { return f.r.Stats().AppliedIndex >= applied })
			if diff := cmp.Diff(before, logBatches(t, f.log)); diff != "" {
				t.Fatalf("log changed by the replay (-before +after):\n%s", diff)
			}
			writeN(t, c, "c", 10)
			c.converge(c.leader())
			checkOnce(t, f, 40)
		})
	}
}

func openBolt(t *testing.T, nd *node) {
	t.Helper()
	s, err := raftboltdb.NewBoltStore(filepath.Join(filepath.Dir(nd.snapDir), "raft.bolt"))
	if err != nil {
		t.Fatal(err)
	}
	nd.logs, nd.stable = s, s
	t.Cleanup(func() { s.Close() })
}

func closeBolt(t *testing.T, nd *node) {
	t.Helper()
	if err := nd.logs.(*raftboltdb.BoltStore).Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCrashReplays crashes a follower whose log store runs without fsync,
// or without a write-ahead log at all: what it applied after its last
// snapshot is lost, and raft's replay after the restart applies it again,
// once.
func TestCrashReplays(t *testing.T) {
	for _, noWAL := range []bool{false, true} {
		t.Run(fmt.Sprintf("nowal=%v", noWAL), func(t *testing.T) { testCrashReplays(t, noWAL) })
	}
}

func testCrashReplays(t *testing.T, noWAL bool) {
	c := newCluster(t, 2, nil)
	l := c.leader()
	// A third member whose log store runs on a crashable file system.
	f := c.newNode(t.TempDir(), "crashy", vfs.NewCrashableMem())
	if noWAL {
		// Reopen the store newNode opened, without a write-ahead log.
		if err := f.store.Close(); err != nil {
			t.Fatal(err)
		}
		f.noWAL = true
		c.openStore(f)
	}
	c.start(f, nil)
	c.connectAll()
	if err := l.r.AddVoter(partition.Server{ID: f.id, Addr: string(f.addr)}); err != nil {
		t.Fatal(err)
	}
	writeN(t, c, "a", 20)
	c.converge(l)
	if err := f.r.Snapshot(); err != nil {
		t.Fatal(err)
	}
	synced := f.log.Applied()
	writeN(t, c, "b", 20)
	c.converge(l)
	applied := f.log.Applied()

	c.stop(f)
	crashed := f.fs.(*vfs.MemFS).CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	if err := f.store.Close(); err != nil {
		t.Fatal(err)
	}
	f.fs = crashed
	c.openStore(f)
	lost := f.log.Applied()
	if lost < synced || lost >= applied {
		t.Fatalf("after the crash the log applied %d; synced %d, applied %d before", lost, synced, applied)
	}
	c.restart(f)
	writeN(t, c, "c", 5)
	c.converge(l)
	checkOnce(t, f, 45)
	if got := f.r.Stats().SnapshotsRestored; got != 0 {
		t.Fatalf("%d snapshots restored; the replay alone should catch up", got)
	}
}
