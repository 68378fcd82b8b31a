package log

import (
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"
	"github.com/runnel-dev/runnel/record"
)

func TestRetentionBytes(t *testing.T) {
	fs := vfs.NewMem()
	opts := testOptions(fs)
	opts.indexInterval = 1
	s := openStore(t, fs, opts)
	id := ID{1, 0}
	l := mustLog(t, s, id)
	var bs []record.Batch
	for i := range 10 {
		b := batch("a", int64(i), int64(i))
		bs = append(bs, b)
		mustAppend(t, l, b)
	}
	size := int64(len(bs[0])) // all batches have the same size
	if l.Size() != 10*size {
		t.Fatalf("size %d, want %d", l.Size(), 10*size)
	}
	// Unlimited: nothing happens.
	if err := l.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	if l.Start() != 0 {
		t.Fatalf("start %d without retention", l.Start())
	}
	// Keep at most 3.5 batches: 7 go, 3 stay.
	l.SetRetention(Retention{MaxBytes: 3*size + size/2})
	if err := l.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	check := func(l *Log) {
		t.Helper()
		if l.Start() != 14 || l.End() != 20 || l.Size() != 3*size {
			t.Fatalf("start %d end %d size %d, want 14 20 %d", l.Start(), l.End(), l.Size(), 3*size)
		}
		_, err := l.Read(13, 1<<20)
		var oor *OutOfRangeError
		if !errors.As(err, &oor) || *oor != (OutOfRangeError{Offset: 13, Start: 14, End: 20}) {
			t.Fatalf("read below start: %v", err)
		}
		got, err := l.Read(14, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(bs[7:], got); diff != "" {
			t.Errorf("read from start (-want +got):\n%s", diff)
		}
		// OffsetForTime does not point below start.
		if off, err := l.OffsetForTime(0); err != nil || off != 14 {
			t.Errorf("OffsetForTime(0) = %d, %v, want 14", off, err)
		}
		if off, err := l.OffsetForTime(8); err != nil || off != 16 {
			t.Errorf("OffsetForTime(8) = %d, %v, want 16", off, err)
		}
		// Index entries of dropped batches are gone.
		lo, hi := logBounds(prefixTime, id)
		it, err := l.s.db.NewIter(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		for ok := it.SeekGE(lo); ok && string(it.Key()) < string(hi); ok = it.Next() {
			e, err := decodeTimeEntry(it.Key(), it.Value())
			if err != nil {
				t.Fatal(err)
			}
			if e.base < 14 {
				t.Errorf("time index entry for dropped batch %d", e.base)
			}
		}
	}
	check(l)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, fs, opts)
	defer s.Close()
	l = mustLog(t, s, id)
	check(l)
}

func TestRetentionAge(t *testing.T) {
	fs := vfs.NewMem()
	now := time.UnixMilli(1000)
	opts := testOptions(fs)
	opts.Now = func() time.Time { return now }
	s := openStore(t, fs, opts)
	l := mustLog(t, s, ID{1, 0})
	mustAppend(t, l, batch("a", 100, 200))                    // 0-1
	mustAppend(t, l, batch("b", 500, 300))                    // 2-3: max 500
	mustAppend(t, l, batch("c", 400))                         // 4: max 400, kept behind 2-3
	mustAppend(t, l, batch("d", 900))                         // 5
	l.SetRetention(Retention{MaxAge: 600 * time.Millisecond}) // cutoff 400
	if err := l.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	if l.Start() != 2 {
		t.Fatalf("start %d, want 2", l.Start())
	}
	now = time.UnixMilli(1450) // cutoff 850
	if err := l.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	if l.Start() != 5 || l.End() != 6 {
		t.Fatalf("start %d end %d, want 5 6", l.Start(), l.End())
	}

	// Removing everything keeps End, also across a restart, and appends
	// carry on from it.
	now = time.UnixMilli(10_000)
	if err := l.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	if l.Start() != 6 || l.End() != 6 || l.Size() != 0 {
		t.Fatalf("start %d end %d size %d, want 6 6 0", l.Start(), l.End(), l.Size())
	}
	if bs, err := l.Read(6, 100); err != nil || bs != nil {
		t.Fatalf("read at end of empty log: %v, %v", bs, err)
	}
	if _, err := l.Read(5, 100); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below start: %v", err)
	}
	if off, err := l.OffsetForTime(0); err != nil || off != 6 {
		t.Fatalf("OffsetForTime on empty log = %d, %v, want 6", off, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, fs, opts)
	defer s.Close()
	l = mustLog(t, s, ID{1, 0})
	if l.Start() != 6 || l.End() != 6 || l.Size() != 0 {
		t.Fatalf("after reopen: start %d end %d size %d, want 6 6 0", l.Start(), l.End(), l.Size())
	}
	b := batch("e", 20_000)
	if got := mustAppend(t, l, b); got != 6 {
		t.Fatalf("append after full retention: base %d, want 6", got)
	}
	if l.Size() != int64(len(b)) {
		t.Errorf("size %d, want %d", l.Size(), len(b))
	}
	if off, err := l.OffsetForTime(0); err != nil || off != 6 {
		t.Fatalf("OffsetForTime = %d, %v, want 6", off, err)
	}
}
