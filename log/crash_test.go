package log

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/runnel-dev/runnel/record"
)

// acked is a batch whose Append returned.
type acked struct {
	id    ID
	batch record.Batch // with its base offset
}

// TestCrash appends from several goroutines, takes a crash clone of the file
// system at a random moment and checks that the store opened on the clone
// has every batch whose Append returned before the clone, at the same
// offsets and with the same bytes, and dense offsets.
func TestCrash(t *testing.T) {
	t.Run("sync", func(t *testing.T) {
		for i := range 40 {
			if err := crashOnce(t, uint64(i), false); err != nil {
				t.Fatalf("seed %d: %v", i, err)
			}
		}
	})
	// The same check must catch the loss NoSync allows, or it checks
	// nothing.
	t.Run("nosync", func(t *testing.T) {
		for i := range 20 {
			if err := crashOnce(t, uint64(i), true); err != nil {
				t.Logf("seed %d: loss detected: %v", i, err)
				return
			}
		}
		t.Fatal("no loss detected with NoSync")
	})
}

// crashOnce runs one crash and returns what the check found missing.
func crashOnce(t *testing.T, seed uint64, noSync bool) error {
	rng := rand.New(rand.NewPCG(seed, 0xc4a54))
	fs := vfs.NewCrashableMem()
	opts := testOptions(fs)
	opts.NoSync = noSync
	opts.memTableSize = 1 << 20 // flush now and then
	s := openStore(t, fs, opts)
	ids := []ID{{1, 0}, {1, 1}}

	var (
		mu     sync.Mutex
		acks   []acked
		target = 1 + rng.IntN(300)
		ready  = make(chan struct{})
		stop   = make(chan struct{})
		wg     sync.WaitGroup
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wrng := rand.New(rand.NewPCG(seed, uint64(w)))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := ids[wrng.IntN(len(ids))]
				l, err := s.Log(id)
				if err != nil {
					t.Error(err)
					return
				}
				recs := make([]record.Record, 1+wrng.IntN(20))
				for j := range recs {
					recs[j] = record.Record{Value: fmt.Appendf(make([]byte, 0, 512), "%d/%d/%d %0*d", w, i, j, wrng.IntN(400), 0), Timestamp: int64(i)}
				}
				b := record.Encode(recs...)
				if _, err := l.Append(b); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acks = append(acks, acked{id, b})
				if len(acks) == target {
					close(ready)
				}
				mu.Unlock()
			}
		}()
	}
	<-ready
	mu.Lock()
	snapshot := append([]acked(nil), acks...)
	mu.Unlock()
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(60), RNG: rand.New(rand.NewPCG(seed, 1))})
	close(stop)
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, crashed, testOptions(crashed))
	defer s.Close()
	stored := make(map[ID]map[int64]record.Batch)
	for _, id := range ids {
		l := mustLog(t, s, id)
		stored[id] = make(map[int64]record.Batch)
		if l.Start() != 0 {
			t.Fatalf("log %s: start %d after crash", id, l.Start())
		}
		// Read checks CRCs and that offsets are dense.
		for from := int64(0); from < l.End(); {
			bs, err := l.Read(from, 1<<20)
			if err != nil {
				t.Fatalf("log %s: %v", id, err)
			}
			for _, b := range bs {
				if b.BaseOffset() != from {
					t.Fatalf("log %s: batch at %d, want %d", id, b.BaseOffset(), from)
				}
				stored[id][from] = b
				from = b.NextOffset()
			}
		}
	}
	for _, a := range snapshot {
		got, ok := stored[a.id][a.batch.BaseOffset()]
		if !ok {
			return fmt.Errorf("log %s: acked batch at %d missing (%d of %d acked batches checked)",
				a.id, a.batch.BaseOffset(), len(snapshot), len(acks))
		}
		if string(got) != string(a.batch) {
			t.Fatalf("log %s: batch at %d differs from the acked one", a.id, a.batch.BaseOffset())
		}
	}
	return nil
}
