package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/runnel-dev/runnel/record"
)

// appendState appends b with state ops setting key to the base offset and
// waits for it.
func appendState(t *testing.T, l *Log, b record.Batch, key string) int64 {
	t.Helper()
	base, wait, err := l.AppendAsyncState(b, func(base int64) []StateOp {
		return []StateOp{{Key: []byte(key), Value: fmt.Append(nil, base)}}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	return base
}

// TestAppendAsyncState appends batches with state, next to plain appends,
// and finds both after a reopen.
func TestAppendAsyncState(t *testing.T) {
	fs := vfs.NewMem()
	s := openStore(t, fs, testOptions(fs))
	l := mustLog(t, s, ID{Topic: 1})
	if base := appendState(t, l, batch("a", 1, 2), "a"); base != 0 {
		t.Fatalf("first base %d", base)
	}
	mustAppend(t, l, batch("b", 3))
	if base := appendState(t, l, batch("c", 4), "c"); base != 3 {
		t.Fatalf("third base %d, want 3", base)
	}
	// A nil state function is AppendAsync without the full validation.
	if _, wait, err := l.AppendAsyncState(batch("d", 5), nil); err != nil {
		t.Fatal(err)
	} else if err := wait(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, fs, testOptions(fs))
	defer s.Close()
	l = mustLog(t, s, ID{Topic: 1})
	if l.End() != 5 {
		t.Fatalf("end %d after reopen, want 5", l.End())
	}
	if got := stateOf(t, l); len(got) != 2 || got["a"] != "0" || got["c"] != "3" {
		t.Fatalf("state after reopen: %v", got)
	}
	bs, err := l.Read(3, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 2 || bs[0].BaseOffset() != 3 || bs[1].BaseOffset() != 4 {
		t.Fatalf("read from 3: %d batches", len(bs))
	}
}

// TestAppendAsyncStateRejects checks that a batch that fails the checks does
// not call state, and that a failed state write leaves the log as it was.
func TestAppendAsyncStateRejects(t *testing.T) {
	fs := vfs.NewMem()
	s := openStore(t, fs, testOptions(fs))
	defer s.Close()
	l := mustLog(t, s, ID{Topic: 1})

	b := batch("a", 1)
	b[len(b)-1] ^= 1
	called := false
	_, _, err := l.AppendAsyncState(b, func(int64) []StateOp { called = true; return nil })
	if !errors.Is(err, ErrCorrupt) || !errors.Is(err, record.ErrCorrupt) {
		t.Fatalf("corrupt batch: %v", err)
	}
	if called {
		t.Fatal("state called for a corrupt batch")
	}

	_, _, err = l.AppendAsyncState(batch("a", 1), func(int64) []StateOp { return []StateOp{{Value: []byte("x")}} })
	if err == nil {
		t.Fatal("empty state key accepted")
	}
	if base := appendState(t, l, batch("b", 2), "b"); base != 0 {
		t.Fatalf("base %d after a failed append, want 0", base)
	}
	if got := stateOf(t, l); len(got) != 1 || got["b"] != "0" {
		t.Fatalf("state: %v", got)
	}
}

// TestAppendAsyncStateCrash appends batches whose state names the next
// offset, from several goroutines, takes a crash clone of the file system at
// a random moment, and checks that on the clone the state and the data come
// from the same writes: the state's offset is the log's end, and covers
// every batch acknowledged before the clone.
func TestAppendAsyncStateCrash(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 0x5747e))
		fs := vfs.NewCrashableMem()
		opts := testOptions(fs)
		opts.memTableSize = 1 << 20
		s := openStore(t, fs, opts)
		l := mustLog(t, s, ID{Topic: 1})

		var (
			mu     sync.Mutex
			acked  int64 // largest end acknowledged
			n      int
			target = 1 + rng.IntN(200)
			ready  = make(chan struct{})
			stop   = make(chan struct{})
			wg     sync.WaitGroup
		)
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					recs := make([]record.Record, 1+(w+i)%7)
					for j := range recs {
						recs[j] = record.Record{Value: fmt.Appendf(nil, "%d/%d/%d %0300d", w, i, j, 0)}
					}
					b := record.Encode(recs...)
					base, wait, err := l.AppendAsyncState(b, func(base int64) []StateOp {
						next := base + int64(len(recs))
						return []StateOp{{Key: []byte("end"), Value: binary.BigEndian.AppendUint64(nil, uint64(next))}}
					})
					if err != nil {
						t.Error(err)
						return
					}
					if err := wait(); err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					acked = max(acked, base+int64(len(recs)))
					if n++; n == target {
						close(ready)
					}
					mu.Unlock()
				}
			}()
		}
		<-ready
		mu.Lock()
		want := acked
		mu.Unlock()
		crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(60), RNG: rand.New(rand.NewPCG(seed, 1))})
		close(stop)
		wg.Wait()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}

		s = openStore(t, crashed, testOptions(crashed))
		l = mustLog(t, s, ID{Topic: 1})
		state := stateOf(t, l)
		end := int64(binary.BigEndian.Uint64([]byte(state["end"])))
		if end != l.End() {
			t.Fatalf("seed %d: state says end %d, log ends at %d", seed, end, l.End())
		}
		if end < want {
			t.Fatalf("seed %d: end %d after crash, %d acknowledged", seed, end, want)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
