package log

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"
	"github.com/runnel-dev/runnel/record"
)

// ops returns a state function that writes the given operations.
func ops(state ...StateOp) func(int64) []StateOp {
	return func(int64) []StateOp { return state }
}

// stateOf returns a log's state as a map.
func stateOf(t testing.TB, l *Log) map[string]string {
	t.Helper()
	m := make(map[string]string)
	if err := l.State(func(k, v []byte) error {
		m[string(k)] = string(v)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestApplyAt(t *testing.T) {
	fs := vfs.NewMem()
	s := openStore(t, fs, testOptions(fs))
	id := ID{7, 1}
	l := mustLog(t, s, id)
	if got := l.Applied(); got != 0 {
		t.Fatalf("applied index of a new log: %d", got)
	}

	b := batch("a", 1, 2, 3)
	orig := append(record.Batch(nil), b...)
	base, err := l.ApplyAt(5, b, ops(StateOp{Key: []byte("p1"), Value: []byte("one")}, StateOp{Key: []byte("p2"), Value: []byte("two")}))
	if err != nil {
		t.Fatal(err)
	}
	if base != 0 || l.End() != 3 || l.Applied() != 5 {
		t.Fatalf("base %d end %d applied %d, want 0 3 5", base, l.End(), l.Applied())
	}
	// A state-only write: no batch, one key deleted.
	if _, err := l.ApplyAt(6, nil, ops(StateOp{Key: []byte("p1")})); err != nil {
		t.Fatal(err)
	}
	base, err = l.ApplyAt(9, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	if base != 3 {
		t.Fatalf("second batch at %d, want 3", base)
	}
	if !bytes.Equal(b, orig) {
		t.Fatal("ApplyAt modified its argument")
	}
	if _, err := l.ApplyAt(8, b, nil); err == nil {
		t.Fatal("ApplyAt below the applied index succeeded")
	}
	corrupt := append(record.Batch(nil), b...)
	corrupt[len(corrupt)-1] ^= 1
	called := false
	if _, err := l.ApplyAt(10, corrupt, func(int64) []StateOp { called = true; return nil }); !errors.Is(err, ErrCorrupt) || called {
		t.Fatalf("corrupt batch: %v, state function called: %v", err, called)
	}
	var gotBase int64 = -1
	if _, err := l.ApplyAt(9, nil, func(base int64) []StateOp { gotBase = base; return nil }); err != nil || gotBase != 6 {
		t.Fatalf("state-only apply: %v, state function saw base %d, want 6", err, gotBase)
	}
	if l.Applied() != 9 || l.End() != 6 {
		t.Fatalf("after rejected writes: applied %d end %d, want 9 6", l.Applied(), l.End())
	}

	check := func(l *Log) {
		t.Helper()
		if l.Applied() != 9 || l.Start() != 0 || l.End() != 6 {
			t.Fatalf("applied %d, [%d, %d), want 9, [0, 6)", l.Applied(), l.Start(), l.End())
		}
		if diff := cmp.Diff(map[string]string{"p2": "two"}, stateOf(t, l)); diff != "" {
			t.Fatalf("state (-want +got):\n%s", diff)
		}
		recs := readAll(t, l, 0, 1<<20)
		if len(recs) != 6 || recs[5].Offset != 5 || string(recs[4].Value) != "a-1" {
			t.Fatalf("records after apply: %+v", recs)
		}
	}
	check(l)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, fs, testOptions(fs))
	defer s.Close()
	check(mustLog(t, s, id))
}

// TestApplyAtCrash applies batches with their index, syncing now and then,
// crashes at a random moment and checks that the applied index always names
// exactly the batches that survived, and that nothing before a Sync is lost.
// Without a write-ahead log (NoWAL) what survives is what memtable flushes
// and Sync wrote.
func TestApplyAtCrash(t *testing.T) {
	for _, noWAL := range []bool{false, true} {
		t.Run(fmt.Sprintf("nowal=%v", noWAL), func(t *testing.T) { testApplyAtCrash(t, noWAL) })
	}
}

func testApplyAtCrash(t *testing.T, noWAL bool) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		fs := vfs.NewCrashableMem()
		opts := testOptions(fs)
		opts.memTableSize = 1 << 20
		opts.NoWAL = noWAL
		s := openStore(t, fs, opts)
		l := mustLog(t, s, ID{1, 1})
		var ends []int64 // ends[i] is End after the batch at index i+1
		synced := 0
		n := 1 + rng.IntN(200)
		for i := range n {
			// Values of a few KiB fill write-ahead log blocks, so that some
			// unsynced writes reach the file and may survive the crash.
			recs := make([]record.Record, 1+rng.IntN(10))
			for j := range recs {
				recs[j] = record.Record{Value: bytes.Repeat([]byte{byte(i)}, rng.IntN(4<<10))}
			}
			b := record.Encode(recs...)
			if _, err := l.ApplyAt(uint64(i+1), b, ops(StateOp{Key: []byte("last"), Value: []byte(fmt.Sprint(i + 1))})); err != nil {
				t.Fatal(err)
			}
			ends = append(ends, l.End())
			if rng.IntN(20) == 0 {
				if err := l.Sync(); err != nil {
					t.Fatal(err)
				}
				synced = i + 1
			}
		}
		crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rng})
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		reopts := testOptions(crashed)
		reopts.NoWAL = noWAL
		s = openStore(t, crashed, reopts)
		l = mustLog(t, s, ID{1, 1})
		applied := int(l.Applied())
		if applied < synced {
			t.Fatalf("seed %d: applied %d after a crash, but %d were synced", seed, applied, synced)
		}
		want := int64(0)
		if applied > 0 {
			want = ends[applied-1]
		}
		if l.End() != want {
			t.Fatalf("seed %d: applied index %d but end %d, want %d", seed, applied, l.End(), want)
		}
		wantState := map[string]string{}
		if applied > 0 {
			wantState["last"] = fmt.Sprint(applied)
		}
		if diff := cmp.Diff(wantState, stateOf(t, l)); diff != "" {
			t.Fatalf("seed %d: state (-want +got):\n%s", seed, diff)
		}
		readAll(t, l, 0, 1<<20)
		s.Close()
	}
}

func TestResetAndAppendRaw(t *testing.T) {
	fs := vfs.NewMem()
	s := openStore(t, fs, testOptions(fs))
	id := ID{2, 0}
	l := mustLog(t, s, id)
	for i := range 3 {
		if _, err := l.ApplyAt(uint64(i+1), batch("old", 1, 2), ops(StateOp{Key: []byte("k"), Value: []byte("v")})); err != nil {
			t.Fatal(err)
		}
	}

	// The copy: batches of another log starting at 100.
	src := mustLog(t, s, ID{2, 9})
	if err := src.Reset(100); err != nil {
		t.Fatal(err)
	}
	var copies []record.Batch
	for i := range 4 {
		if _, err := src.ApplyAt(uint64(50+i), batch(fmt.Sprint("new", i), 10, 20, 30), nil); err != nil {
			t.Fatal(err)
		}
	}
	bs, err := src.Read(100, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	copies = bs

	w := l.Wait()
	if err := l.Reset(100); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w:
	default:
		t.Fatal("Reset did not wake waiters")
	}
	if l.Start() != 100 || l.End() != 100 || l.Applied() != 0 || len(stateOf(t, l)) != 0 {
		t.Fatalf("after reset: [%d, %d) applied %d state %v", l.Start(), l.End(), l.Applied(), stateOf(t, l))
	}
	if err := l.AppendRaw(copies[1]); err == nil {
		t.Fatal("AppendRaw out of order succeeded")
	}
	for _, b := range copies {
		if err := l.AppendRaw(b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.ApplyAt(53, nil, ops(StateOp{Key: []byte("k2"), Value: []byte("v2")})); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}

	check := func(l *Log) {
		t.Helper()
		if l.Start() != 100 || l.End() != 112 || l.Applied() != 53 {
			t.Fatalf("[%d, %d) applied %d, want [100, 112) 53", l.Start(), l.End(), l.Applied())
		}
		got, err := l.Read(100, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(copies, got); diff != "" {
			t.Fatalf("copied batches differ (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(map[string]string{"k2": "v2"}, stateOf(t, l)); diff != "" {
			t.Fatalf("state (-want +got):\n%s", diff)
		}
		if off, err := l.OffsetForTime(20); err != nil || off != 101 {
			t.Fatalf("offset for time 20: %d, %v, want 101", off, err)
		}
		if _, err := l.Read(99, 100); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("read before the reset start: %v", err)
		}
	}
	check(l)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, fs, testOptions(fs))
	defer s.Close()
	l = mustLog(t, s, id)
	check(l)

	// Appends go on after the copy.
	if base, err := l.ApplyAt(54, batch("more", 40), nil); err != nil || base != 112 {
		t.Fatalf("apply after reset: %d, %v", base, err)
	}
}

func TestRangeSize(t *testing.T) {
	fs := vfs.NewMem()
	s := openStore(t, fs, testOptions(fs))
	defer s.Close()
	l := mustLog(t, s, ID{1, 2})
	var sizes []int64
	for i := range 5 {
		b := batch(fmt.Sprint(i), make([]int64, i+1)...)
		sizes = append(sizes, int64(len(b)))
		if _, err := l.ApplyAt(uint64(i+1), b, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Batches hold [0,1) [1,3) [3,6) [6,10) [10,15).
	for _, tc := range []struct {
		from, to int64
		want     int64
	}{
		{0, 15, sizes[0] + sizes[1] + sizes[2] + sizes[3] + sizes[4]},
		{1, 6, sizes[1] + sizes[2]},
		{6, 6, 0},
		{15, 15, 0},
		{10, 15, sizes[4]},
	} {
		got, err := l.RangeSize(tc.from, tc.to)
		if err != nil || got != tc.want {
			t.Errorf("RangeSize(%d, %d) = %d, %v, want %d", tc.from, tc.to, got, err, tc.want)
		}
	}
	for _, tc := range [][2]int64{{2, 6}, {1, 5}, {0, 16}, {6, 3}} {
		if got, err := l.RangeSize(tc[0], tc[1]); err == nil {
			t.Errorf("RangeSize(%d, %d) = %d, want an error", tc[0], tc[1], got)
		}
	}
}

func TestDropRemovesAppliedAndState(t *testing.T) {
	fs := vfs.NewMem()
	s := openStore(t, fs, testOptions(fs))
	defer s.Close()
	id := ID{4, 4}
	l := mustLog(t, s, id)
	if _, err := l.ApplyAt(3, nil, ops(StateOp{Key: []byte("x"), Value: []byte("y")})); err != nil {
		t.Fatal(err)
	}
	ids, err := s.IDs()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]ID{id}, ids); diff != "" {
		t.Fatalf("a log with only state is listed (-want +got):\n%s", diff)
	}
	if err := s.Drop(id); err != nil {
		t.Fatal(err)
	}
	l = mustLog(t, s, id)
	if l.Applied() != 0 || len(stateOf(t, l)) != 0 {
		t.Fatalf("after drop: applied %d state %v", l.Applied(), stateOf(t, l))
	}
}

// TestNoWAL checks a store without a write-ahead log: Append and
// WriteState are refused, and what Sync, Drop and Close made durable
// survives a crash.
func TestNoWAL(t *testing.T) {
	fs := vfs.NewCrashableMem()
	opts := testOptions(fs)
	opts.NoWAL = true
	s := openStore(t, fs, opts)
	a, b := mustLog(t, s, ID{1, 0}), mustLog(t, s, ID{1, 1})
	if _, err := a.Append(batch("x", 1)); !errors.Is(err, ErrNoWAL) {
		t.Fatalf("Append on a NoWAL store: %v, want ErrNoWAL", err)
	}
	if _, err := a.WriteState([]StateOp{{Key: []byte("k"), Value: []byte("v")}}); !errors.Is(err, ErrNoWAL) {
		t.Fatalf("WriteState on a NoWAL store: %v, want ErrNoWAL", err)
	}
	for i := range 3 {
		if _, err := a.ApplyAt(uint64(i+1), batch(fmt.Sprint("a", i), 1), nil); err != nil {
			t.Fatal(err)
		}
		if _, err := b.ApplyAt(uint64(i+1), batch(fmt.Sprint("b", i), 1), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ApplyAt(4, batch("a-lost", 1), nil); err != nil {
		t.Fatal(err)
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	if err := s.Drop(ID{1, 1}); err != nil {
		t.Fatal(err)
	}
	dropped := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	if _, err := a.ApplyAt(5, batch("a-closed", 1), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	reopen := func(fs vfs.FS) *Store {
		t.Helper()
		o := testOptions(fs)
		o.NoWAL = true
		return openStore(t, fs, o)
	}
	for _, c := range []struct {
		name     string
		fs       vfs.FS
		aApplied uint64
		bEnd     int64
	}{
		{"crash after sync", crashed, 3, 3},
		{"crash after drop", dropped, 4, 0}, // Drop flushes every log
		{"close", fs, 5, 0},
	} {
		s := reopen(c.fs)
		if got := mustLog(t, s, ID{1, 0}).Applied(); got != c.aApplied {
			t.Errorf("%s: log a applied %d, want %d", c.name, got, c.aApplied)
		}
		if got := mustLog(t, s, ID{1, 1}).End(); got != c.bEnd {
			t.Errorf("%s: log b ends at %d, want %d", c.name, got, c.bEnd)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestNoWALAfterWAL reopens a store that had a write-ahead log without one,
// as after an upgrade: Pebble replays the old log first.
func TestNoWALAfterWAL(t *testing.T) {
	fs := vfs.NewMem()
	opts := testOptions(fs)
	opts.NoSync = true
	s := openStore(t, fs, opts)
	l := mustLog(t, s, ID{1, 0})
	for i := range 3 {
		if _, err := l.ApplyAt(uint64(i+1), batch(fmt.Sprint("a", i), 1), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	opts.NoWAL = true
	s = openStore(t, fs, opts)
	defer s.Close()
	if l := mustLog(t, s, ID{1, 0}); l.Applied() != 3 || l.End() != 3 {
		t.Fatalf("after reopening without a write-ahead log: applied %d, end %d; want 3, 3", l.Applied(), l.End())
	}
}
