package raftstore

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
)

// openMem opens a Store on an in-memory file system.
func openMem(t *testing.T, fs vfs.FS) *Store {
	t.Helper()
	s, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustStore(t *testing.T, g *Group, ls []*raft.Log) {
	t.Helper()
	if err := g.StoreLogs(ls); err != nil {
		t.Fatal(err)
	}
}

func indexes(t *testing.T, g *Group) (uint64, uint64) {
	t.Helper()
	first, err := g.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	last, err := g.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	return first, last
}

// TestGroupsAreApart checks that groups whose ids are prefixes of each
// other, or empty, or full of 0xff bytes, never see each other's keys.
func TestGroupsAreApart(t *testing.T) {
	fs := vfs.NewMem()
	s := openMem(t, fs)
	ids := []string{"", "a", "ab", "a\x00", "\xff", "\xff\xff", "controller", "3/0"}
	for n, id := range ids {
		g := s.Group(id)
		if g.ID() != id {
			t.Errorf("Group(%q).ID() = %q", id, g.ID())
		}
		base := uint64(100 * (n + 1))
		mustStore(t, g, entries(base, base+uint64(n), 1))
		if err := g.Set([]byte("k"), []byte(id)); err != nil {
			t.Fatal(err)
		}
	}
	check := func(s *Store) {
		t.Helper()
		for n, id := range ids {
			g := s.Group(id)
			base := uint64(100 * (n + 1))
			if first, last := indexes(t, g); first != base || last != base+uint64(n) {
				t.Errorf("group %q: indexes %d-%d; want %d-%d", id, first, last, base, base+uint64(n))
			}
			if v, err := g.Get([]byte("k")); err != nil || string(v) != id {
				t.Errorf("group %q: Get(k) = %q, %v", id, v, err)
			}
		}
	}
	check(s)
	if s.Group("a") != s.Group("a") {
		t.Error("Group returned two *Group for one id")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openMem(t, fs)
	defer s.Close()
	check(s)
}

func TestDropGroup(t *testing.T) {
	fs := vfs.NewMem()
	s := openMem(t, fs)
	a, ab := s.Group("a"), s.Group("ab")
	for _, g := range []*Group{a, ab} {
		mustStore(t, g, entries(1, 10, 1))
		if err := g.SetUint64([]byte("CurrentTerm"), 4); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DropGroup("a"); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	for name, err := range map[string]error{
		"FirstIndex": func() error { _, err := a.FirstIndex(); return err }(),
		"GetLog":     a.GetLog(1, &l),
		"StoreLogs":  a.StoreLogs(entries(11, 11, 1)),
		"Set":        a.Set([]byte("k"), nil),
	} {
		if !errors.Is(err, ErrDropped) {
			t.Errorf("%s on a dropped group = %v; want ErrDropped", name, err)
		}
	}
	a2 := s.Group("a")
	if first, last := indexes(t, a2); first != 0 || last != 0 {
		t.Errorf("group a after drop: indexes %d-%d; want empty", first, last)
	}
	if _, err := a2.GetUint64([]byte("CurrentTerm")); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("GetUint64 after drop = %v; want ErrKeyNotFound", err)
	}
	if first, last := indexes(t, ab); first != 1 || last != 10 {
		t.Errorf("group ab after dropping a: indexes %d-%d; want 1-10", first, last)
	}

	// A group not used since Open is dropped from disk too.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openMem(t, fs)
	defer s.Close()
	if err := s.DropGroup("ab"); err != nil {
		t.Fatal(err)
	}
	if first, last := indexes(t, s.Group("ab")); first != 0 || last != 0 {
		t.Errorf("group ab dropped after reopen: indexes %d-%d; want empty", first, last)
	}
}

func TestClosed(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	g := s.Group("g")
	mustStore(t, g, entries(1, 1, 1))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	for name, err := range map[string]error{
		"Close":      s.Close(),
		"DropGroup":  s.DropGroup("g"),
		"LastIndex":  func() error { _, err := g.LastIndex(); return err }(),
		"GetLog":     g.GetLog(1, &l),
		"StoreLogs":  g.StoreLogs(entries(2, 2, 1)),
		"new group":  s.Group("h").StoreLog(entry(1, 1)),
		"GetUint64":  func() error { _, err := g.GetUint64([]byte("k")); return err }(),
		"DeleteRnge": g.DeleteRange(1, 1),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v; want ErrClosed", name, err)
		}
	}
}

func TestStats(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := s.Stats()
	g := s.Group("g")
	mustStore(t, g, entries(1, 3, 1))
	mustStore(t, g, entries(4, 4, 1))
	st := s.Stats()
	if st.StoreCalls != 2 || st.Entries != 4 {
		t.Errorf("Stats() = %+v; want 2 StoreLogs calls and 4 entries", st)
	}
	if st.Syncs-before.Syncs < 2 {
		t.Errorf("Stats().Syncs went from %d to %d over two synced writes", before.Syncs, st.Syncs)
	}
	if st.EntryBytes <= 0 || st.WALBytes < st.EntryBytes || st.BytesWritten < st.WALBytes {
		t.Errorf("Stats() = %+v; want 0 < EntryBytes <= WALBytes <= BytesWritten", st)
	}
}

// TestConcurrentGroups runs raft's access pattern on several groups at
// once: one appender and truncator per group, readers alongside. Run it
// with -race.
func TestConcurrentGroups(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	const groups, perGroup = 4, 200
	var wg sync.WaitGroup
	errs := make(chan error, 2*groups)
	for n := range groups {
		g := s.Group(fmt.Sprint(n))
		done := make(chan struct{})
		// truncating is the last index of the truncation under way, if
		// any: DeleteRange removes entries from Pebble before FirstIndex
		// moves past them.
		var truncating atomic.Uint64
		wg.Go(func() {
			defer close(done)
			for i := uint64(1); i <= perGroup; i++ {
				if err := g.StoreLog(entry(i, 1)); err != nil {
					errs <- err
					return
				}
				if i%50 == 0 {
					truncating.Store(i - 25)
					if err := g.DeleteRange(0, i-25); err != nil {
						errs <- err
						return
					}
				}
			}
		})
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				first, _ := g.FirstIndex()
				last, err := g.LastIndex()
				if err != nil {
					errs <- err
					return
				}
				if last == 0 {
					continue
				}
				var l raft.Log
				if err := g.GetLog(last, &l); err != nil {
					// Only truncation, while this reader was
					// descheduled or under way, can take the last
					// entry away.
					if f, _ := g.FirstIndex(); !errors.Is(err, raft.ErrLogNotFound) || (f <= last && last > truncating.Load()) {
						errs <- fmt.Errorf("GetLog(last %d): %w; first now %d", last, err, f)
						return
					}
				}
				// first may be truncated under us: only a missing
				// entry is acceptable then.
				if err := g.GetLog(first, &l); err != nil && !errors.Is(err, raft.ErrLogNotFound) {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for n := range groups {
		if first, last := indexes(t, s.Group(fmt.Sprint(n))); first != perGroup-24 || last != perGroup {
			t.Errorf("group %d: indexes %d-%d; want %d-%d", n, first, last, perGroup-24, perGroup)
		}
	}
}

// TestModel runs random appends, overwrites, gaps, deletes and reopens on a
// Group and on a map, and checks that they agree after every step: the
// cached first and last index must always match what is on disk.
// It runs with the entry cache off, large enough for every entry, and
// so small that entries come and go all the time.
func TestModel(t *testing.T) {
	for _, cache := range []int64{-1, 0, 3 * (entryOverhead + 64)} {
		for seed := range uint64(5) {
			t.Run(fmt.Sprintf("cache=%d/%d", cache, seed), func(t *testing.T) { testModel(t, seed, cache) })
		}
	}
}

func testModel(t *testing.T, seed uint64, cache int64) {
	rng := rand.New(rand.NewPCG(seed, seed))
	fs := vfs.NewMem()
	open := func() *Store {
		s, err := Open("db", Options{FS: fs, EntryCacheBytes: cache})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	defer func() { s.Close() }()
	g := s.Group("m")
	model := map[uint64]*raft.Log{}
	next := uint64(1)
	for step := range 300 {
		var op string
		switch r := rng.IntN(100); {
		case r < 50:
			n := uint64(1 + rng.IntN(5))
			op = fmt.Sprintf("append %d-%d", next, next+n-1)
			ls := entries(next, next+n-1, uint64(step))
			mustStore(t, g, ls)
			for _, l := range ls {
				model[l.Index] = l
			}
			next += n
		case r < 55:
			next += uint64(1 + rng.IntN(100))
			op = fmt.Sprintf("gap to %d", next)
		case r < 75 && next > 1:
			lo := 1 + rng.Uint64N(next)
			hi := lo + rng.Uint64N(next-lo+3)
			if rng.IntN(10) == 0 {
				hi = math.MaxUint64
			}
			op = fmt.Sprintf("delete %d-%d", lo, hi)
			if err := g.DeleteRange(lo, hi); err != nil {
				t.Fatal(err)
			}
			for i := range model {
				if i >= lo && i <= hi {
					delete(model, i)
				}
			}
		case r < 80:
			op = "reopen"
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = open()
			g = s.Group("m")
		default:
			op = "read"
		}

		keys := slices.Sorted(func(yield func(uint64) bool) {
			for k := range model {
				if !yield(k) {
					return
				}
			}
		})
		var wantFirst, wantLast uint64
		if len(keys) > 0 {
			wantFirst, wantLast = keys[0], keys[len(keys)-1]
		}
		if first, last := indexes(t, g); first != wantFirst || last != wantLast {
			t.Fatalf("step %d (%s): indexes %d-%d; want %d-%d", step, op, first, last, wantFirst, wantLast)
		}
		probe := rng.Uint64N(next + 2)
		var got raft.Log
		err := g.GetLog(probe, &got)
		if want, ok := model[probe]; ok {
			if err != nil {
				t.Fatalf("step %d (%s): GetLog(%d): %v", step, op, probe, err)
			}
			if diff := cmp.Diff(*want, got, logOpts); diff != "" {
				t.Fatalf("step %d (%s): GetLog(%d) (-want +got):\n%s", step, op, probe, diff)
			}
		} else if !errors.Is(err, raft.ErrLogNotFound) {
			t.Fatalf("step %d (%s): GetLog(%d) = %v; want ErrLogNotFound", step, op, probe, err)
		}
	}
}
