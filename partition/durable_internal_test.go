package partition

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"

	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/record"
)

// batchEntry is raft entry index of an idempotent producer's batch, as
// applyN makes them.
func batchEntry(index uint64) *raft.Log {
	k := int(index)
	var b record.Builder
	b.SetProducer(int64(k%3), 0, int32(k/3))
	b.Append(&record.Record{Value: bytes.Repeat([]byte{byte(k)}, 100+k*50), Timestamp: int64(k)})
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: append([]byte{entryBatch}, b.Build()...)}
}

// TestRaftLogStoreKeepsWhatIsNotDurable checks that a compaction keeps the
// entries after the log's Durable index, and that deleting the entries
// after a conflict, up to the last one, is not held back.
func TestRaftLogStoreKeepsWhatIsNotDurable(t *testing.T) {
	fs := vfs.NewMem()
	ls, err := log.Open("db", log.Options{FS: fs, NoWAL: true, RetentionInterval: -1, CheckpointBytes: -1, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer ls.Close()
	l, err := ls.Log(log.ID{Topic: 1})
	if err != nil {
		t.Fatal(err)
	}
	f := newTestFSM(l)
	inmem := raft.NewInmemStore()
	store := &raftLogStore{LogStore: inmem, log: l}
	apply := func(from, to uint64) {
		for i := from; i <= to; i++ {
			e := batchEntry(i)
			if err := store.StoreLog(e); err != nil {
				t.Fatal(err)
			}
			if res := f.apply(e); res.err != nil {
				t.Fatal(res.err)
			}
		}
	}
	apply(1, 40)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	apply(41, 100)
	if d := l.Durable(); d != 40 {
		t.Fatalf("Durable %d after a sync at 40, want 40", d)
	}
	// raft compacts up to its snapshot at 90, keeping 10.
	if err := store.DeleteRange(1, 90); err != nil {
		t.Fatal(err)
	}
	if first, _ := store.FirstIndex(); first != 41 {
		t.Fatalf("first index %d after compacting to 90 with 40 durable, want 41", first)
	}
	// Nothing more goes until the log syncs again.
	if err := store.DeleteRange(41, 90); err != nil {
		t.Fatal(err)
	}
	if first, _ := store.FirstIndex(); first != 41 {
		t.Fatalf("first index %d after a second compaction, want 41", first)
	}
	// A conflict deletes up to the last entry, whatever is durable.
	if err := store.DeleteRange(95, 100); err != nil {
		t.Fatal(err)
	}
	if last, _ := store.LastIndex(); last != 94 {
		t.Fatalf("last index %d after deleting 95 to 100, want 94", last)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := store.DeleteRange(41, 90); err != nil {
		t.Fatal(err)
	}
	if first, _ := store.FirstIndex(); first != 91 {
		t.Fatalf("first index %d after compacting to 90 with 100 durable, want 91", first)
	}
}

// TestReplayAfterCrash crashes a store without a write-ahead log after raft
// took a snapshot past what it had flushed, and checks that the replica's
// recovery replays the lost entries from the raft log, which the
// compaction kept.
func TestReplayAfterCrash(t *testing.T) {
	for seed := uint64(0); seed < 8; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		fs := vfs.NewCrashableMem()
		opts := log.Options{FS: fs, NoWAL: true, RetentionInterval: -1, CheckpointBytes: -1, CacheBytes: 1 << 20}
		ls, err := log.Open("db", opts)
		if err != nil {
			t.Fatal(err)
		}
		id := log.ID{Topic: 1}
		l, err := ls.Log(id)
		if err != nil {
			t.Fatal(err)
		}
		f := newTestFSM(l)
		inmem := raft.NewInmemStore()
		store := &raftLogStore{LogStore: inmem, log: l}
		files, err := raft.NewFileSnapshotStoreWithLogger(t.TempDir(), retainSnapshots, newRaftLogger(testLogger()))
		if err != nil {
			t.Fatal(err)
		}
		snaps := &snapshotStore{files: files, log: l}

		n := uint64(20 + rng.IntN(60))
		synced := uint64(rng.IntN(int(n)))
		for i := uint64(1); i <= n; i++ {
			e := batchEntry(i)
			if err := store.StoreLog(e); err != nil {
				t.Fatal(err)
			}
			if res := f.apply(e); res.err != nil {
				t.Fatal(res.err)
			}
			if i == synced {
				if err := l.Sync(); err != nil {
					t.Fatal(err)
				}
			}
		}
		want := allBatches(t, l)
		wantOps := f.dedupe.ops()
		// raft snapshots at n and compacts, keeping 5 entries.
		persistTo(t, snaps, f, n)
		if n > 5 {
			if err := store.DeleteRange(1, n-5); err != nil {
				t.Fatal(err)
			}
		}
		crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(60), RNG: rand.New(rand.NewPCG(seed, 1))})
		ls.Close()

		ls2, err := log.Open("db", log.Options{FS: crashed, NoWAL: true, RetentionInterval: -1, CheckpointBytes: -1, CacheBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		l2, err := ls2.Log(id)
		if err != nil {
			t.Fatal(err)
		}
		if l2.Applied() < synced {
			t.Fatalf("seed %d: applied %d after the crash, below the %d synced", seed, l2.Applied(), synced)
		}
		replayTo, err := recoverSnapshot(l2, &snapshotStore{files: files, log: l2})
		if err != nil {
			t.Fatal(err)
		}
		if l2.Applied() < n && replayTo != n {
			t.Fatalf("seed %d: recovery asks to replay to %d, want %d", seed, replayTo, n)
		}
		f2 := newTestFSM(l2)
		if err := f2.dedupe.load(l2); err != nil {
			t.Fatal(err)
		}
		if err := f2.replay(store, replayTo); err != nil {
			t.Fatalf("seed %d (synced %d, applied %d after the crash): %v", seed, synced, l2.Applied(), err)
		}
		if l2.Applied() != n {
			t.Fatalf("seed %d: applied %d after replay, want %d", seed, l2.Applied(), n)
		}
		if diff := cmp.Diff(want, allBatches(t, l2)); diff != "" {
			t.Fatalf("seed %d: batches after replay (-before the crash +after):\n%s", seed, diff)
		}
		if diff := cmp.Diff(wantOps, f2.dedupe.ops(), sortOps); diff != "" {
			t.Fatalf("seed %d: producer state after replay (-before +after):\n%s", seed, diff)
		}
		ls2.Close()
	}
}

// TestReplayRefusesAGap checks that recovery fails, naming the entries,
// when the raft log no longer holds what the partition log lost.
func TestReplayRefusesAGap(t *testing.T) {
	l := openTestLog(t, log.ID{Topic: 1})
	f := newTestFSM(l)
	inmem := raft.NewInmemStore()
	for i := uint64(10); i <= 20; i++ {
		if err := inmem.StoreLog(batchEntry(i)); err != nil {
			t.Fatal(err)
		}
	}
	err := f.replay(inmem, 20)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("entries 1 to 9 are lost")) {
		t.Fatalf("replay over a gap: %v", err)
	}
	if l.Applied() != 0 {
		t.Fatalf("replay over a gap applied up to %d", l.Applied())
	}
}

// ops returns the in-memory state as state operations, to compare with
// what a log holds.
func (d *dedupe) ops() []log.StateOp {
	ops := make([]log.StateOp, 0, len(d.producers)+len(d.ids)+1)
	for p := range d.producers {
		ops = append(ops, log.StateOp{Key: producerKey(p), Value: d.producers[p].encode()})
	}
	for id, e := range d.ids {
		ops = append(ops, log.StateOp{Key: msgIDKey(id), Value: e.encode()})
	}
	if d.clock != math.MinInt64 || d.nextSeq != 0 {
		ops = append(ops, log.StateOp{Key: []byte{keyClock}, Value: d.encodeClock()})
	}
	return ops
}
