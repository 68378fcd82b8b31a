package log

import (
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestDrop(t *testing.T) {
	fs := vfs.NewMem()
	s := openStore(t, fs, testOptions(fs))
	id, other := ID{3, 1}, ID{3, 2}
	l := mustLog(t, s, id)
	o := mustLog(t, s, other)
	for range 5 {
		mustAppend(t, l, batch("a", 1, 2))
		mustAppend(t, o, batch("o", 1))
	}
	l.SetRetention(Retention{MaxBytes: 1})
	if err := l.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	w := l.Wait()
	if err := s.Drop(id); err != nil {
		t.Fatal(err)
	}
	<-w // dropping wakes waiters
	if _, err := l.Append(batch("a", 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("append to dropped log: %v, want ErrClosed", err)
	}
	if _, err := l.Read(0, 100); !errors.Is(err, ErrClosed) {
		t.Errorf("read dropped log: %v, want ErrClosed", err)
	}
	if err := l.EnforceRetention(); !errors.Is(err, ErrClosed) {
		t.Errorf("retention on dropped log: %v, want ErrClosed", err)
	}

	check := func(s *Store) {
		t.Helper()
		// Nothing of the log is left.
		for _, p := range allPrefixes {
			lo, hi := logBounds(p, id)
			it, err := s.db.NewIter(nil)
			if err != nil {
				t.Fatal(err)
			}
			for ok := it.SeekGE(lo); ok && string(it.Key()) < string(hi); ok = it.Next() {
				t.Errorf("key %x left after drop", it.Key())
			}
			it.Close()
		}
		n := mustLog(t, s, id)
		if n.Start() != 0 || n.End() != 0 {
			t.Errorf("log after drop: start %d end %d, want 0 0", n.Start(), n.End())
		}
		if o := mustLog(t, s, other); o.End() != 5 {
			t.Errorf("other log end %d, want 5", o.End())
		}
	}
	check(s)
	n := mustLog(t, s, id)
	if n == l {
		t.Fatal("Log returned the dropped *Log")
	}
	if got := mustAppend(t, n, batch("n", 1)); got != 0 {
		t.Errorf("first append after drop: base %d, want 0", got)
	}
	if err := s.Drop(id); err != nil {
		t.Fatal(err)
	}
	// A log never opened since Open can be dropped too.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, fs, testOptions(fs))
	defer s.Close()
	check(s)
}

func TestWait(t *testing.T) {
	fs := vfs.NewMem()
	s := openStore(t, fs, testOptions(fs))
	defer s.Close()
	l := mustLog(t, s, ID{1, 0})
	w := l.Wait()
	select {
	case <-w:
		t.Fatal("wait channel closed before any append")
	default:
	}
	woke := make(chan int64)
	go func() {
		<-w
		woke <- l.End()
	}()
	mustAppend(t, l, batch("a", 1, 2))
	if end := <-woke; end != 2 {
		t.Errorf("woken with end %d, want 2", end)
	}
	if l.Wait() == w {
		t.Error("Wait returned a closed channel after the append")
	}
}

func TestRetentionLoop(t *testing.T) {
	fs := vfs.NewMem()
	opts := testOptions(fs)
	opts.RetentionInterval = time.Millisecond
	s := openStore(t, fs, opts)
	defer s.Close()
	l := mustLog(t, s, ID{1, 0})
	for range 10 {
		mustAppend(t, l, batch("a", 1))
	}
	l.SetRetention(Retention{MaxBytes: 1})
	// The loop runs every millisecond; wait for it with a generous deadline.
	deadline := time.Now().Add(10 * time.Second)
	for l.Start() != 10 {
		if time.Now().After(deadline) {
			t.Fatalf("retention loop did not run: start %d", l.Start())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestIDs(t *testing.T) {
	fs := vfs.NewMem()
	s := openStore(t, fs, testOptions(fs))
	defer s.Close()
	want := []ID{{0, 0}, {1, 0}, {1, 5}, {1<<32 - 1, 1<<32 - 1}}
	for _, id := range want {
		mustAppend(t, mustLog(t, s, id), batch("a", 1))
		mustAppend(t, mustLog(t, s, id), batch("b", 1))
	}
	mustLog(t, s, ID{7, 7}) // opened, never written: not on disk
	// Emptied by retention: still there, its start kept in metadata.
	gone := mustLog(t, s, ID{2, 0})
	mustAppend(t, gone, batch("a", 1))
	gone.SetRetention(Retention{MaxBytes: 1})
	if err := gone.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	want = []ID{{0, 0}, {1, 0}, {1, 5}, {2, 0}, {1<<32 - 1, 1<<32 - 1}}
	got, err := s.IDs()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("IDs (-want +got):\n%s", diff)
	}
	if err := s.Drop(ID{1, 5}); err != nil {
		t.Fatal(err)
	}
	got, err = s.IDs()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]ID{{0, 0}, {1, 0}, {2, 0}, {1<<32 - 1, 1<<32 - 1}}, got); diff != "" {
		t.Errorf("IDs after drop (-want +got):\n%s", diff)
	}
}
