package raftstore

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb"
)

// logStableStore is what raft needs from a store: a log and a stable store.
type logStableStore interface {
	raft.LogStore
	raft.StableStore
}

// impl is one implementation under the conformance suite. open opens or
// reopens the store kept in dir and registers its closing with t.Cleanup;
// closeFn, if not nil, closes it early so it can be reopened.
type impl struct {
	name       string
	persistent bool
	open       func(t *testing.T, dir string) (s logStableStore, closeFn func())
}

var impls = []impl{
	{"raftstore", true, openGroup},
	{"raft-boltdb", true, openBolt},
	{"inmem", false, func(t *testing.T, dir string) (logStableStore, func()) {
		return raft.NewInmemStore(), func() {}
	}},
}

func openGroup(t *testing.T, dir string) (logStableStore, func()) {
	t.Helper()
	s, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	return s.Group("3/0"), closeOnce(t, s.Close)
}

func openBolt(t *testing.T, dir string) (logStableStore, func()) {
	t.Helper()
	s, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	return s, closeOnce(t, s.Close)
}

// closeOnce returns a function that calls closeFn the first time it is
// called, and registers it with t.Cleanup so it is called at least once.
func closeOnce(t *testing.T, closeFn func() error) func() {
	t.Helper()
	done := false
	fn := func() {
		if done {
			return
		}
		done = true
		if err := closeFn(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
	t.Cleanup(fn)
	return fn
}

func TestConformance(t *testing.T) {
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			if im.name == "raft-boltdb" && raceEnabled {
				t.Skip("boltdb/bolt v1.3.1 fails the race detector's pointer checks; see race_test.go")
			}
			testLogStableStore(t, im)
		})
	}
}

// entry returns a raft.Log with some of every field set.
func entry(index, term uint64) *raft.Log {
	return &raft.Log{
		Index:      index,
		Term:       term,
		Type:       raft.LogCommand,
		Data:       []byte{byte(index), byte(index >> 8), 0xff},
		AppendedAt: time.Unix(1_700_000_000, int64(index)).UTC(),
	}
}

func entries(from, to, term uint64) []*raft.Log {
	var ls []*raft.Log
	for i := from; i <= to; i++ {
		ls = append(ls, entry(i, term))
	}
	return ls
}

// logOpts compares entries: nil and empty slices alike (and fast for 1 MiB
// of data), times as instants (cmp uses time.Time's Equal).
var logOpts = cmp.Comparer(bytes.Equal)

// testLogStableStore is the conformance suite for a raft log and stable
// store. Every implementation raft is run on here must pass it.
func testLogStableStore(t *testing.T, im impl) {
	// checkLogs checks the first and last index, that every entry in want
	// reads back equal, and that the indexes in missing are not found.
	checkLogs := func(t *testing.T, s raft.LogStore, first, last uint64, want []*raft.Log, missing ...uint64) {
		t.Helper()
		if got, err := s.FirstIndex(); err != nil || got != first {
			t.Errorf("FirstIndex() = %d, %v; want %d", got, err, first)
		}
		if got, err := s.LastIndex(); err != nil || got != last {
			t.Errorf("LastIndex() = %d, %v; want %d", got, err, last)
		}
		for _, w := range want {
			var got raft.Log
			if err := s.GetLog(w.Index, &got); err != nil {
				t.Errorf("GetLog(%d): %v", w.Index, err)
				continue
			}
			if diff := cmp.Diff(*w, got, logOpts); diff != "" {
				t.Errorf("GetLog(%d) (-want +got):\n%s", w.Index, diff)
			}
		}
		for _, i := range missing {
			var got raft.Log
			if err := s.GetLog(i, &got); !errors.Is(err, raft.ErrLogNotFound) {
				t.Errorf("GetLog(%d) = %v; want raft.ErrLogNotFound", i, err)
			}
		}
	}

	t.Run("empty", func(t *testing.T) {
		s, _ := im.open(t, t.TempDir())
		checkLogs(t, s, 0, 0, nil, 0, 1, 2)
	})

	t.Run("store and get", func(t *testing.T) {
		s, _ := im.open(t, t.TempDir())
		one := entry(1, 1)
		if err := s.StoreLog(one); err != nil {
			t.Fatal(err)
		}
		checkLogs(t, s, 1, 1, []*raft.Log{one}, 0, 2)
		batch := entries(2, 10, 2)
		if err := s.StoreLogs(batch); err != nil {
			t.Fatal(err)
		}
		checkLogs(t, s, 1, 10, append([]*raft.Log{one}, batch...), 0, 11)
		if err := s.StoreLogs(nil); err != nil {
			t.Errorf("StoreLogs(nil): %v", err)
		}
	})

	t.Run("every field", func(t *testing.T) {
		s, _ := im.open(t, t.TempDir())
		big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
		want := []*raft.Log{
			{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: []byte("conf")},
			{Index: 2, Term: 1, Type: raft.LogNoop},
			{Index: 3, Term: 1, Type: raft.LogBarrier, Data: []byte{}},
			{Index: 4, Term: 7, Type: raft.LogCommand, Data: []byte("x"), Extensions: []byte("ext")},
			{Index: 5, Term: 7, Type: raft.LogCommand, Extensions: []byte{0, 1, 2}},
			{Index: 6, Term: 1 << 62, Type: raft.LogCommand, Data: big, AppendedAt: time.Now()},
			{Index: 7, Term: 8, Type: raft.LogType(200), Data: []byte("future type"),
				AppendedAt: time.Date(1969, 7, 20, 20, 17, 40, 123456789, time.UTC)},
		}
		if err := s.StoreLogs(want); err != nil {
			t.Fatal(err)
		}
		checkLogs(t, s, 1, 7, want)
	})

	t.Run("overwrite", func(t *testing.T) {
		s, _ := im.open(t, t.TempDir())
		if err := s.StoreLogs(entries(1, 5, 1)); err != nil {
			t.Fatal(err)
		}
		// A follower replaces a conflicting suffix: raft deletes it first,
		// but an overwrite in place must also win.
		again := entries(4, 6, 2)
		if err := s.StoreLogs(again); err != nil {
			t.Fatal(err)
		}
		checkLogs(t, s, 1, 6, append(entries(1, 3, 1), again...))
	})

	t.Run("delete range", func(t *testing.T) {
		s, _ := im.open(t, t.TempDir())
		if err := s.StoreLogs(entries(1, 20, 1)); err != nil {
			t.Fatal(err)
		}
		// Head: compaction after a snapshot.
		if err := s.DeleteRange(1, 5); err != nil {
			t.Fatal(err)
		}
		checkLogs(t, s, 6, 20, entries(6, 20, 1), 1, 5)
		// Tail: a follower dropping a conflicting suffix.
		if err := s.DeleteRange(16, 20); err != nil {
			t.Fatal(err)
		}
		checkLogs(t, s, 6, 15, entries(6, 15, 1), 16, 20)
		// Appending after the tail again.
		if err := s.StoreLogs(entries(16, 17, 2)); err != nil {
			t.Fatal(err)
		}
		checkLogs(t, s, 6, 17, append(entries(6, 15, 1), entries(16, 17, 2)...))
		// Everything, with bounds beyond both ends.
		if err := s.DeleteRange(1, 100); err != nil {
			t.Fatal(err)
		}
		checkLogs(t, s, 0, 0, nil, 6, 17)
		// A gap after a snapshot restore: the log starts anywhere.
		if err := s.StoreLogs(entries(1000, 1002, 3)); err != nil {
			t.Fatal(err)
		}
		checkLogs(t, s, 1000, 1002, entries(1000, 1002, 3), 999, 1003)
	})

	t.Run("stable", func(t *testing.T) {
		s, _ := im.open(t, t.TempDir())
		// raft matches this text to tell a missing key from a failure.
		if v, err := s.Get([]byte("missing")); err == nil || err.Error() != "not found" || len(v) != 0 {
			t.Errorf("Get(missing) = %q, %v; want error \"not found\"", v, err)
		}
		if v, err := s.GetUint64([]byte("missing")); v != 0 || (err != nil && err.Error() != "not found") {
			t.Errorf("GetUint64(missing) = %d, %v; want 0 and nil or \"not found\"", v, err)
		}
		set := func(k, v string) {
			t.Helper()
			if err := s.Set([]byte(k), []byte(v)); err != nil {
				t.Fatal(err)
			}
		}
		set("LastVoteCand", "node-1")
		set("k", "v1")
		set("k", "v2")
		for k, want := range map[string]string{"LastVoteCand": "node-1", "k": "v2"} {
			if got, err := s.Get([]byte(k)); err != nil || string(got) != want {
				t.Errorf("Get(%q) = %q, %v; want %q", k, got, err, want)
			}
		}
		for _, v := range []uint64{0, 1, 1 << 63} {
			if err := s.SetUint64([]byte("CurrentTerm"), v); err != nil {
				t.Fatal(err)
			}
			if got, err := s.GetUint64([]byte("CurrentTerm")); err != nil || got != v {
				t.Errorf("GetUint64 = %d, %v; want %d", got, err, v)
			}
		}
		// Stable keys and log entries do not mix.
		if err := s.StoreLogs(entries(1, 2, 1)); err != nil {
			t.Fatal(err)
		}
		checkLogs(t, s, 1, 2, entries(1, 2, 1))
	})

	if !im.persistent {
		return // raft.InmemStore neither copies nor keeps
	}
	t.Run("returned values are copies", func(t *testing.T) {
		s, _ := im.open(t, t.TempDir())
		if err := s.Set([]byte("k"), []byte("value")); err != nil {
			t.Fatal(err)
		}
		v, err := s.Get([]byte("k"))
		if err != nil {
			t.Fatal(err)
		}
		v[0] = 'X'
		if v2, _ := s.Get([]byte("k")); string(v2) != "value" {
			t.Errorf("Get after changing a returned value = %q", v2)
		}
	})

	t.Run("reopen", func(t *testing.T) {
		dir := t.TempDir()
		s, closeFn := im.open(t, dir)
		ext := &raft.Log{Index: 11, Term: 2, Type: raft.LogCommand, Extensions: []byte("e")}
		if err := s.StoreLogs(append(entries(1, 10, 1), ext)); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteRange(1, 3); err != nil {
			t.Fatal(err)
		}
		if err := s.SetUint64([]byte("CurrentTerm"), 9); err != nil {
			t.Fatal(err)
		}
		if err := s.Set([]byte("LastVoteCand"), []byte("n2")); err != nil {
			t.Fatal(err)
		}
		closeFn()

		s, _ = im.open(t, dir)
		checkLogs(t, s, 4, 11, append(entries(4, 10, 1), ext), 1, 3, 12)
		if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 9 {
			t.Errorf("GetUint64(CurrentTerm) after reopen = %d, %v; want 9", v, err)
		}
		if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "n2" {
			t.Errorf("Get(LastVoteCand) after reopen = %q, %v; want n2", v, err)
		}
	})
}
