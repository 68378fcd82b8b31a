package log

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestDurableMovesWithSync checks that Durable trails Applied until a sync,
// on a store with and without a write-ahead log, and starts at the applied
// index a reopened log loads.
func TestDurableMovesWithSync(t *testing.T) {
	for _, noWAL := range []bool{false, true} {
		fs := vfs.NewMem()
		opts := testOptions(fs)
		opts.NoWAL = noWAL
		opts.CheckpointBytes = -1
		s := openStore(t, fs, opts)
		l := mustLog(t, s, ID{1, 0})
		for i := uint64(1); i <= 5; i++ {
			if _, err := l.ApplyAt(i, batch("a", 1), nil); err != nil {
				t.Fatal(err)
			}
		}
		if l.Durable() != 0 {
			t.Fatalf("noWAL %v: Durable %d before any sync", noWAL, l.Durable())
		}
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
		if _, err := l.ApplyAt(6, batch("b", 1), nil); err != nil {
			t.Fatal(err)
		}
		if l.Durable() != 5 || l.Applied() != 6 {
			t.Fatalf("noWAL %v: Durable %d, Applied %d, want 5 and 6", noWAL, l.Durable(), l.Applied())
		}
		if err := l.Reset(0); err != nil {
			t.Fatal(err)
		}
		if l.Durable() != 0 {
			t.Fatalf("noWAL %v: Durable %d after Reset", noWAL, l.Durable())
		}
		if _, err := l.ApplyAt(9, batch("c", 1), nil); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = openStore(t, fs, opts)
		l = mustLog(t, s, ID{1, 0})
		if l.Durable() != 9 || l.Applied() != 9 {
			t.Fatalf("noWAL %v: reopened with Durable %d, Applied %d, want 9", noWAL, l.Durable(), l.Applied())
		}
		s.Close()
	}
}

// TestCheckpointsWithoutWAL checks that a store without a write-ahead log
// flushes on its own once CheckpointBytes are written, moving Durable up,
// and that a crash keeps at least what Durable said.
func TestCheckpointsWithoutWAL(t *testing.T) {
	for seed := uint64(0); seed < 4; seed++ {
		rng := rand.New(rand.NewPCG(seed, 3))
		fs := vfs.NewCrashableMem()
		opts := testOptions(fs)
		opts.NoWAL = true
		opts.CheckpointBytes = 8 << 10
		opts.CheckpointInterval = time.Hour
		s := openStore(t, fs, opts)
		l := mustLog(t, s, ID{1, 0})
		n := uint64(50 + rng.IntN(200))
		for i := uint64(1); i <= n; i++ {
			if _, err := l.ApplyAt(i, batch("x", int64(i)), nil); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for l.Durable() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("seed %d: Durable still 0 after %d applies of ~%d bytes each", seed, n, len(batch("x", 1)))
			}
			<-time.After(time.Millisecond)
		}
		durable := l.Durable()
		crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(100), RNG: rand.New(rand.NewPCG(seed, 1))})
		s.Close()
		s2 := openStore(t, crashed, opts)
		l2 := mustLog(t, s2, ID{1, 0})
		if l2.Applied() < durable {
			t.Fatalf("seed %d: applied %d after the crash, below Durable %d", seed, l2.Applied(), durable)
		}
		if got := l2.End(); got != int64(l2.Applied()) {
			t.Fatalf("seed %d: end %d after the crash with applied %d (one record per entry)", seed, got, l2.Applied())
		}
		s2.Close()
	}
}
