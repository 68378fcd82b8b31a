package log

import (
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"
	"github.com/runnel-dev/runnel/record"
)

func TestAppendRead(t *testing.T) {
	fs := vfs.NewMem()
	s := openStore(t, fs, testOptions(fs))
	l := mustLog(t, s, ID{Topic: 1, Partition: 2})
	if l.Start() != 0 || l.End() != 0 {
		t.Fatalf("new log: start %d end %d", l.Start(), l.End())
	}
	if bs, err := l.Read(0, 1<<20); err != nil || bs != nil {
		t.Fatalf("read empty log: %v, %v", bs, err)
	}

	b0 := batch("a", 10, 11, 12)
	b1 := batch("b", 20)
	b2 := batch("c", 30, 31)
	for i, tc := range []struct {
		b    record.Batch
		base int64
	}{{b0, 0}, {b1, 3}, {b2, 4}} {
		if got := mustAppend(t, l, tc.b); got != tc.base {
			t.Fatalf("append %d: base %d, want %d", i, got, tc.base)
		}
		if got := tc.b.BaseOffset(); got != tc.base {
			t.Fatalf("append %d: batch base offset %d, want %d", i, got, tc.base)
		}
	}
	if l.End() != 6 || l.Start() != 0 {
		t.Fatalf("start %d end %d, want 0 6", l.Start(), l.End())
	}
	if got, want := l.Size(), int64(len(b0)+len(b1)+len(b2)); got != want {
		t.Errorf("size %d, want %d", got, want)
	}

	// All of it.
	bs, err := l.Read(0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]record.Batch{b0, b1, b2}, bs); diff != "" {
		t.Errorf("read from 0 (-want +got):\n%s", diff)
	}
	// From the middle of a batch: the batch holding the offset comes first.
	bs, err = l.Read(1, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]record.Batch{b0, b1, b2}, bs); diff != "" {
		t.Errorf("read from 1 (-want +got):\n%s", diff)
	}
	bs, err = l.Read(5, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]record.Batch{b2}, bs); diff != "" {
		t.Errorf("read from 5 (-want +got):\n%s", diff)
	}
	// maxBytes: at least one batch, then whole batches that fit.
	for _, tc := range []struct {
		max  int
		want []record.Batch
	}{
		{0, []record.Batch{b0}},
		{1, []record.Batch{b0}},
		{len(b0) + len(b1) - 1, []record.Batch{b0}},
		{len(b0) + len(b1), []record.Batch{b0, b1}},
		{len(b0) + len(b1) + len(b2), []record.Batch{b0, b1, b2}},
	} {
		bs, err := l.Read(0, tc.max)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, bs); diff != "" {
			t.Errorf("read max %d (-want +got):\n%s", tc.max, diff)
		}
	}
	// At the end: nothing, no error.
	if bs, err := l.Read(6, 1<<20); err != nil || bs != nil {
		t.Fatalf("read at end: %v, %v", bs, err)
	}
	// Past the end and before the start.
	for _, off := range []int64{7, 100, -1} {
		_, err := l.Read(off, 1<<20)
		var oor *OutOfRangeError
		if !errors.As(err, &oor) || !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("read %d: %v, want out of range", off, err)
		}
		if diff := cmp.Diff(OutOfRangeError{Offset: off, Start: 0, End: 6}, *oor); diff != "" {
			t.Errorf("read %d: error (-want +got):\n%s", off, diff)
		}
	}

	// Reopen: same offsets, same bytes.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, fs, testOptions(fs))
	defer s.Close()
	l = mustLog(t, s, ID{Topic: 1, Partition: 2})
	if l.Start() != 0 || l.End() != 6 {
		t.Fatalf("after reopen: start %d end %d, want 0 6", l.Start(), l.End())
	}
	bs, err = l.Read(0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]record.Batch{b0, b1, b2}, bs); diff != "" {
		t.Errorf("read after reopen (-want +got):\n%s", diff)
	}
	if got := mustAppend(t, l, batch("d", 40)); got != 6 {
		t.Errorf("append after reopen: base %d, want 6", got)
	}
	// Another log is independent.
	other := mustLog(t, s, ID{Topic: 1, Partition: 3})
	if other.End() != 0 {
		t.Errorf("other log end %d, want 0", other.End())
	}
	if got := mustAppend(t, other, batch("e", 1)); got != 0 {
		t.Errorf("other log base %d, want 0", got)
	}
}

func TestLogIsShared(t *testing.T) {
	fs := vfs.NewMem()
	s := openStore(t, fs, testOptions(fs))
	defer s.Close()
	a := mustLog(t, s, ID{1, 1})
	b := mustLog(t, s, ID{1, 1})
	if a != b {
		t.Fatal("Log returned two *Log for one id")
	}
}

func TestAppendRejectsCorrupt(t *testing.T) {
	fs := vfs.NewMem()
	s := openStore(t, fs, testOptions(fs))
	defer s.Close()
	l := mustLog(t, s, ID{1, 0})
	good := batch("a", 1, 2)
	bad := append(record.Batch(nil), good...)
	bad[len(bad)-1] ^= 0xff
	_, err := l.Append(bad)
	if !errors.Is(err, ErrCorrupt) || !errors.Is(err, record.ErrCorrupt) {
		t.Fatalf("append corrupt batch: %v, want ErrCorrupt and record.ErrCorrupt", err)
	}
	if _, err := l.Append(record.Batch{1, 2, 3}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("append short batch: %v, want ErrCorrupt", err)
	}
	if l.End() != 0 {
		t.Fatalf("end %d after rejected appends", l.End())
	}
	if got := mustAppend(t, l, good); got != 0 {
		t.Fatalf("append after reject: base %d, want 0", got)
	}
}

func TestReadDetectsCorruption(t *testing.T) {
	fs := vfs.NewMem()
	s := openStore(t, fs, testOptions(fs))
	defer s.Close()
	id := ID{7, 0}
	l := mustLog(t, s, id)
	mustAppend(t, l, batch("a", 1, 2))
	mustAppend(t, l, batch("b", 3))
	// Flip a byte in the stored second batch behind the log's back.
	bad := batch("b", 3)
	bad.SetBaseOffset(2)
	bad[len(bad)-1] ^= 0xff
	if err := s.db.Set(dataKey(id, 2), bad, nil); err != nil {
		t.Fatal(err)
	}
	_, err := l.Read(0, 1<<20)
	if !errors.Is(err, ErrCorrupt) || !errors.Is(err, record.ErrCorrupt) {
		t.Fatalf("read: %v, want ErrCorrupt", err)
	}
	if want := "log 7/0: offset 2: "; len(err.Error()) < len(want) || err.Error()[:len(want)] != want {
		t.Errorf("error %q does not start with %q", err, want)
	}
	// A missing batch is corruption too.
	if err := s.db.Delete(dataKey(id, 2), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Read(2, 1<<20); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read missing batch: %v, want ErrCorrupt", err)
	}
	if _, err := l.Read(0, 1<<20); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read up to missing batch: %v, want ErrCorrupt", err)
	}
}

func TestOffsetForTime(t *testing.T) {
	fs := vfs.NewMem()
	opts := testOptions(fs)
	opts.indexInterval = 1 // an index entry per batch
	s := openStore(t, fs, opts)
	defer s.Close()
	l := mustLog(t, s, ID{1, 0})
	// Offsets: 0:100 1:300 | 2:200 3:250 | 4:500 | 5:400
	mustAppend(t, l, batch("a", 100, 300))
	mustAppend(t, l, batch("b", 200, 250))
	mustAppend(t, l, batch("c", 500))
	mustAppend(t, l, batch("d", 400))
	for _, tc := range []struct{ ms, want int64 }{
		{0, 0}, {100, 0}, {101, 1}, {300, 1}, {301, 4}, {400, 4}, {500, 4}, {501, 6},
	} {
		got, err := l.OffsetForTime(tc.ms)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("OffsetForTime(%d) = %d, want %d", tc.ms, got, tc.want)
		}
	}
}

func TestClosed(t *testing.T) {
	fs := vfs.NewMem()
	s := openStore(t, fs, testOptions(fs))
	l := mustLog(t, s, ID{1, 0})
	w := l.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	<-w // closing wakes waiters
	if _, err := l.Append(batch("a", 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("append after close: %v", err)
	}
	if _, err := l.Read(0, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("read after close: %v", err)
	}
	if _, err := s.Log(ID{1, 0}); !errors.Is(err, ErrClosed) {
		t.Errorf("log after close: %v", err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second close: %v", err)
	}
}

func TestOptionsValidated(t *testing.T) {
	if _, err := Open("db", Options{FS: vfs.NewMem(), CacheBytes: -1}); err == nil {
		t.Fatal("negative CacheBytes accepted")
	}
}
