package partition

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/record"
)

func openTestLog(t *testing.T, id log.ID) *log.Log {
	t.Helper()
	s, err := log.Open("db", log.Options{FS: vfs.NewMem(), RetentionInterval: -1, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	l, err := s.Log(id)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// receiveSnapshot saves stream into store as a follower receiving it from
// its leader does, and opens what was saved.
func receiveSnapshot(t *testing.T, store *snapshotStore, index, term uint64, stream []byte) (*raft.SnapshotMeta, io.ReadCloser) {
	t.Helper()
	sink, err := store.Create(1, index, term, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write(stream); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	meta, rc, err := store.Open(sink.ID())
	if err != nil {
		t.Fatal(err)
	}
	return meta, rc
}

func allBatches(t *testing.T, l *log.Log) []record.Batch {
	t.Helper()
	var out []record.Batch
	for from := l.Start(); from < l.End(); {
		bs, err := l.Read(from, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bs...)
		from = bs[len(bs)-1].NextOffset()
	}
	return out
}

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []header{
		{},
		{inline: true, applied: 7, start: 3, end: 90, state: []log.StateOp{{Key: []byte("p1"), Value: []byte("v")}, {Key: []byte("c"), Value: []byte{}}}},
		{inline: true, partial: true, applied: 9, start: 40, end: 90},
	} {
		raw := h.encode()
		got, gotRaw, err := readHeader(bytes.NewReader(append(raw, "trailing batches"...)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(raw, gotRaw) {
			t.Fatal("raw header bytes differ")
		}
		if diff := cmp.Diff(h, got, cmp.AllowUnexported(header{})); diff != "" {
			t.Fatalf("header (-want +got):\n%s", diff)
		}
		raw[len(raw)-5] ^= 1
		if _, _, err := readHeader(bytes.NewReader(raw)); err == nil {
			t.Fatal("a flipped bit went unnoticed")
		}
	}
}

// TestHeaderRefusesUnknownFlags checks that a header with a flag this
// version does not know, or partial without inline, is refused rather
// than read as a whole snapshot.
func TestHeaderRefusesUnknownFlags(t *testing.T) {
	for _, flags := range []byte{flagPartial, 4, 0x80 | flagInline} {
		raw := header{inline: true, end: 5}.encode()
		raw[8] = flags
		body := raw[8 : len(raw)-4]
		binary.BigEndian.PutUint32(raw[len(raw)-4:], crc32.Checksum(body, castagnoli))
		if _, _, err := readHeader(bytes.NewReader(raw)); err == nil {
			t.Errorf("flags %#x: header accepted", flags)
		}
	}
}

func FuzzReadHeader(f *testing.F) {
	f.Add(header{inline: true, applied: 1, start: 0, end: 5, state: []log.StateOp{{Key: []byte("k"), Value: []byte("v")}}}.encode())
	f.Add([]byte(snapshotMagic + "\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, raw, err := readHeader(bytes.NewReader(b))
		if err != nil {
			return
		}
		again, _, err := readHeader(bytes.NewReader(h.encode()))
		if err != nil {
			t.Fatalf("re-encoded header: %v", err)
		}
		if !bytes.Equal(again.encode(), raw) && len(h.state) == 0 {
			t.Fatalf("header does not round trip")
		}
	})
}

// persistSnapshot takes a snapshot of f as raft does at index, saves it
// in a new snapshot store for f's log, and returns the store and the
// snapshot's id.
func persistSnapshot(t *testing.T, f *fsm, index uint64) (*snapshotStore, string) {
	t.Helper()
	store := newTestSnapshotStore(t, f.log)
	return store, persistTo(t, store, f, index)
}

// persistTo takes a snapshot of f as raft does at index, saves it in
// store, and returns the snapshot's id.
func persistTo(t *testing.T, store raft.SnapshotStore, f *fsm, index uint64) string {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink, err := store.Create(1, index, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	return sink.ID()
}

// readSnapshot opens snapshot id of store, as a leader does to send it,
// and returns its meta and the whole stream.
func readSnapshot(t *testing.T, store *snapshotStore, id string) (*raft.SnapshotMeta, []byte) {
	t.Helper()
	meta, rc, err := store.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	stream, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return meta, stream
}

// newTestSnapshotStore returns a snapshot store for l in a temporary
// directory.
func newTestSnapshotStore(t *testing.T, l *log.Log) *snapshotStore {
	t.Helper()
	files, err := raft.NewFileSnapshotStoreWithLogger(t.TempDir(), retainSnapshots, newRaftLogger(testLogger()))
	if err != nil {
		t.Fatal(err)
	}
	return &snapshotStore{files: files, log: l}
}

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestFSM(l *log.Log) *fsm {
	return &fsm{log: l, dedupe: newDedupe(10, 60_000, 10), ws: newWaiters(), logger: testLogger(), failCh: make(chan struct{})}
}

// applyN applies n batches of idempotent producers to f's log from raft
// index first on, as raft would.
func applyN(t *testing.T, f *fsm, first uint64, n int) {
	t.Helper()
	for i := range n {
		k := int(first) + i
		var b record.Builder
		b.SetProducer(int64(k%3), 0, int32(k/3))
		b.Append(&record.Record{Value: bytes.Repeat([]byte{byte(k)}, 100+k*50), Timestamp: int64(k)})
		e := &raft.Log{Index: uint64(k), Term: 1, Data: append([]byte{entryBatch}, b.Build()...)}
		if res := f.apply(e); res.err != nil {
			t.Fatal(res.err)
		}
	}
}

// TestSnapshotStream takes a header-only snapshot, opens it as a leader
// would to send it, saves the stream as a follower would and restores it
// into another log.
func TestSnapshotStream(t *testing.T) {
	src := openTestLog(t, log.ID{Topic: 1})
	f := newTestFSM(src)
	applyN(t, f, 1, 20)
	store := newTestSnapshotStore(t, src)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if st := snap.(*fsmSnapshot).hdr.state; len(st) != 0 {
		t.Fatalf("a snapshot taken here holds %d state keys; the state is sent from the log", len(st))
	}
	applyN(t, f, 21, 5)
	sink, err := store.Create(1, 20, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	// Retention drops the first batches before the snapshot is sent.
	src.SetRetention(log.Retention{MaxBytes: src.Size() - 300})
	if err := src.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	start := src.Start()
	if start == 0 {
		t.Fatal("retention dropped nothing")
	}

	meta, stream := readSnapshot(t, store, sink.ID())
	if int64(len(stream)) != meta.Size {
		t.Fatalf("stream of %d bytes, meta says %d", len(stream), meta.Size)
	}

	// The follower's side: the stream lands in its store in full.
	dst := openTestLog(t, log.ID{Topic: 2})
	applyN(t, newTestFSM(dst), 1, 3) // content to be replaced
	dstStore := newTestSnapshotStore(t, dst)
	// An inline snapshot opens as stored.
	meta2, rc2 := receiveSnapshot(t, dstStore, meta.Index, meta.Term, stream)
	again, _ := io.ReadAll(rc2)
	rc2.Close()
	if !bytes.Equal(again, stream) || meta2.Size != meta.Size {
		t.Fatal("the received snapshot does not open as it arrived")
	}

	df := newTestFSM(dst)
	_, rc3, err := dstStore.Open(meta2.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := df.Restore(rc3); err != nil {
		t.Fatal(err)
	}
	// The copy is the source as it is when the snapshot is sent, less
	// what retention dropped: the 5 batches applied after the snapshot
	// was taken are in it, and the follower's state machine skips their
	// entries when raft sends them.
	want := allBatches(t, src)
	if dst.Start() != start || dst.End() != src.End() || dst.Applied() != 25 {
		t.Fatalf("restored [%d, %d) at %d, want [%d, %d) at 25", dst.Start(), dst.End(), dst.Applied(), start, src.End())
	}
	if diff := cmp.Diff(want, allBatches(t, dst)); diff != "" {
		t.Fatalf("batches (-src +dst):\n%s", diff)
	}
	if diff := cmp.Diff(f.dedupe.ops(), df.dedupe.ops(), sortOps); diff != "" {
		t.Fatalf("producer state (-src +restored):\n%s", diff)
	}
	if diff := cmp.Diff(stateOf(t, src), stateOf(t, dst)); diff != "" {
		t.Fatalf("state keys (-src +restored):\n%s", diff)
	}
	if res := df.apply(&raft.Log{Index: 22, Term: 1, Data: []byte{entryNoop}}); res.err == nil {
		t.Fatal("an entry the snapshot covers was applied again")
	}

	// A crash in the middle of a restore leaves the log reset: opening the
	// replica finishes the restore from the saved snapshot.
	if err := dst.Reset(0); err != nil {
		t.Fatal(err)
	}
	if _, err := recoverSnapshot(dst, dstStore); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, allBatches(t, dst)); diff != "" {
		t.Fatalf("batches after recovery (-src +dst):\n%s", diff)
	}
	// With the log caught up, recovery does nothing.
	before := dst.Applied()
	if _, err := recoverSnapshot(dst, dstStore); err != nil || dst.Applied() != before {
		t.Fatalf("second recovery: %v, applied %d, want %d", err, dst.Applied(), before)
	}

	// Retention past the snapshot's end: the stream starts where the log
	// now starts.
	snapEnd := snap.(*fsmSnapshot).hdr.end
	src.SetRetention(log.Retention{MaxBytes: 1})
	if err := src.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	if src.Start() <= snapEnd {
		t.Fatalf("retention left the log starting at %d", src.Start())
	}
	_, rest := readSnapshot(t, store, sink.ID())
	empty := openTestLog(t, log.ID{Topic: 3})
	ef := newTestFSM(empty)
	if err := ef.Restore(io.NopCloser(bytes.NewReader(rest))); err != nil {
		t.Fatal(err)
	}
	if empty.Start() != src.Start() || empty.End() != src.End() || empty.Applied() != 25 {
		t.Fatalf("restored [%d, %d) at %d, want [%d, %d) at 25", empty.Start(), empty.End(), empty.Applied(), src.Start(), src.End())
	}
	applyN(t, ef, 26, 1)
	if empty.End() != src.End()+1 {
		t.Fatalf("the next entry went to %d", empty.End()-1)
	}
}

// TestSnapshotHeaderOnlyBehind asks for the raft log to be replayed up to
// the snapshot when the log lost writes a snapshot taken here covers, and
// fails when the raft log does not hold them.
func TestSnapshotHeaderOnlyBehind(t *testing.T) {
	l := openTestLog(t, log.ID{Topic: 1})
	f := newTestFSM(l)
	applyN(t, f, 1, 5)
	store := newTestSnapshotStore(t, l)
	snap, _ := f.Snapshot()
	sink, _ := store.Create(1, 14, 1, raft.Configuration{}, 1, nil)
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	if err := l.Reset(0); err != nil {
		t.Fatal(err)
	}
	replayTo, err := recoverSnapshot(l, store)
	if err != nil || replayTo != 14 {
		t.Fatalf("recovery of a log behind a header-only snapshot at 14: replay to %d, %v", replayTo, err)
	}
	if err := f.replay(raft.NewInmemStore(), replayTo); err == nil {
		t.Fatal("replay from an empty raft log succeeded")
	}
}

var sortOps = cmp.Transformer("sort", func(ops []log.StateOp) map[string]string {
	m := make(map[string]string)
	for _, op := range ops {
		m[string(op.Key)] = string(op.Value)
	}
	return m
})

func TestWaiters(t *testing.T) {
	ws := newWaiters()
	a, ta := ws.add(1)
	b, _ := ws.add(1)
	c, tc := ws.add(2)
	d, _ := ws.add(2)
	done := func(w *waiter) bool {
		select {
		case <-w.done:
			return true
		default:
			return false
		}
	}
	ws.applied(ta, result{base: 5, term: 1, index: 3})
	if !done(a) || a.res.base != 5 || done(b) {
		t.Fatal("applying the first proposal should end it alone")
	}
	// Another replica's entry ends nothing.
	other := append([]byte(nil), ta...)
	other[0] ^= 1
	ws.applied(other, result{term: 5})
	ws.applied(nil, result{term: 5})
	if done(b) {
		t.Fatal("another replica's entry ended a proposal")
	}
	// The third proposal applied: the second was overwritten.
	ws.applied(tc, result{base: 9, term: 2})
	if !done(b) || b.res.err == nil || !done(c) || c.res.base != 9 {
		t.Fatalf("b: %v %v, c: %v %v", done(b), b.res.err, done(c), c.res)
	}
	ws.failBefore(2)
	if done(d) {
		t.Fatal("failBefore ended a proposal of its own term")
	}
	ws.failBefore(3)
	if !done(d) || ws.len() != 0 {
		t.Fatal("failBefore left a proposal of an older term")
	}
}

func TestDedupeReload(t *testing.T) {
	l := openTestLog(t, log.ID{Topic: 1})
	f := newTestFSM(l)
	f.dedupe = newDedupe(4, 1000, 6)
	seqs := make(map[int64]int32)
	for i := range 300 {
		var b record.Builder
		pid := int64(i*7%9) - 1 // -1: no producer
		if pid >= 0 {
			b.SetProducer(pid, 0, seqs[pid])
			seqs[pid]++
		}
		r := record.Record{Value: []byte(fmt.Sprint(i)), Timestamp: int64(i * 37)}
		if i%3 == 0 {
			r.Headers = []record.Header{{Key: MsgIDHeader, Value: []byte(fmt.Sprint("id", i%11))}}
		}
		b.Append(&r)
		e := &raft.Log{Index: uint64(i + 1), Term: 1, Data: append([]byte{entryBatch}, b.Build()...)}
		if res := f.apply(e); res.err != nil {
			t.Fatalf("entry %d: %v", i, res.err)
		}
		if i%25 != 0 {
			continue
		}
		// The state reloaded from the log is the state in memory, in the
		// same orders.
		d := newDedupe(4, 1000, 6)
		if err := d.load(l); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(f.dedupe.ops(), d.ops(), sortOps); diff != "" {
			t.Fatalf("after %d: reloaded state (-memory +reloaded):\n%s", i, diff)
		}
		if diff := cmp.Diff(lruOrder(f.dedupe), lruOrder(d)); diff != "" {
			t.Fatalf("after %d: LRU order (-memory +reloaded):\n%s", i, diff)
		}
		if len(f.dedupe.producers) > 4 || len(f.dedupe.ids) > 6 {
			t.Fatalf("%d producers and %d ids kept, bounds 4 and 6", len(f.dedupe.producers), len(f.dedupe.ids))
		}
	}
}

func lruOrder(d *dedupe) []int64 {
	var out []int64
	for e := d.lru.Front(); e != nil; e = e.Next() {
		out = append(out, e.Value.(*producer).id)
	}
	return out
}

// partialStream returns the stream of a snapshot of f at its applied
// index, made partial for a follower whose log ends at from, and the size
// of the same snapshot sent whole.
func partialStream(t *testing.T, f *fsm, from int64) (stream []byte, whole int64) {
	t.Helper()
	store, id := persistSnapshot(t, f, f.log.Applied())
	meta, rc, err := store.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	ls := rc.(*logStream)
	size, ok := ls.continueFrom(from)
	if !ok {
		t.Fatalf("continueFrom(%d) refused", from)
	}
	if stream, err = io.ReadAll(ls); err != nil {
		t.Fatal(err)
	}
	if int64(len(stream)) != size {
		t.Fatalf("partial stream of %d bytes, continueFrom said %d", len(stream), size)
	}
	return stream, meta.Size
}

// stateOf returns l's state keys and values.
func stateOf(t *testing.T, l *log.Log) map[string]string {
	t.Helper()
	out := map[string]string{}
	if err := l.State(func(k, v []byte) error { out[string(k)] = string(v); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPartialSnapshotRestore restores a partial snapshot into a log that
// holds the first batches: it gets the rest, the leader's state replaces
// its own (a key only it had goes), and the stream is smaller than the
// whole snapshot.
func TestPartialSnapshotRestore(t *testing.T) {
	src := openTestLog(t, log.ID{Topic: 1})
	sf := newTestFSM(src)
	applyN(t, sf, 1, 20)

	dst := openTestLog(t, log.ID{Topic: 2})
	applyN(t, newTestFSM(dst), 1, 12)
	if _, err := dst.ApplyAt(dst.Applied(), nil, func(int64) []log.StateOp {
		return []log.StateOp{{Key: []byte("only-here"), Value: []byte("x")}}
	}); err != nil {
		t.Fatal(err)
	}
	stream, whole := partialStream(t, sf, dst.End())
	had, err := src.RangeSize(src.Start(), dst.End())
	if err != nil {
		t.Fatal(err)
	}
	// The same header, without the batches the follower has.
	if int64(len(stream)) != whole-had {
		t.Fatalf("partial stream of %d bytes; the whole is %d, the follower has %d of it", len(stream), whole, had)
	}

	df := newTestFSM(dst)
	if err := df.Restore(io.NopCloser(bytes.NewReader(stream))); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(allBatches(t, src), allBatches(t, dst)); diff != "" {
		t.Fatalf("batches (-leader +follower):\n%s", diff)
	}
	if diff := cmp.Diff(stateOf(t, src), stateOf(t, dst)); diff != "" {
		t.Fatalf("state (-leader +follower):\n%s", diff)
	}
	if dst.Applied() != src.Applied() {
		t.Fatalf("applied %d, want %d", dst.Applied(), src.Applied())
	}
}

// TestPartialSnapshotSkipsWhatTheLogGained restores a partial snapshot
// into a log that applied more batches after it reported its end.
func TestPartialSnapshotSkipsWhatTheLogGained(t *testing.T) {
	src := openTestLog(t, log.ID{Topic: 1})
	sf := newTestFSM(src)
	applyN(t, sf, 1, 20)
	dst := openTestLog(t, log.ID{Topic: 2})
	df := newTestFSM(dst)
	applyN(t, df, 1, 12)
	stream, _ := partialStream(t, sf, dst.End())
	applyN(t, df, 13, 3)
	if err := df.Restore(io.NopCloser(bytes.NewReader(stream))); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(allBatches(t, src), allBatches(t, dst)); diff != "" {
		t.Fatalf("batches (-leader +follower):\n%s", diff)
	}
}

// TestPartialSnapshotRefusesAGap restores a partial snapshot into a log
// that ends before the snapshot's batches start: it is refused, the log
// is unchanged and the state machine goes on, so raft can send a
// snapshot again.
func TestPartialSnapshotRefusesAGap(t *testing.T) {
	src := openTestLog(t, log.ID{Topic: 1})
	sf := newTestFSM(src)
	applyN(t, sf, 1, 20)
	stream, _ := partialStream(t, sf, 15)

	dst := openTestLog(t, log.ID{Topic: 2})
	df := newTestFSM(dst)
	applyN(t, df, 1, 5)
	before := allBatches(t, dst)
	err := df.Restore(io.NopCloser(bytes.NewReader(stream)))
	if !errors.Is(err, errPartialGap) {
		t.Fatalf("Restore: %v, want the gap refused", err)
	}
	if df.failed != nil {
		t.Fatalf("the state machine stopped: %v", df.failed)
	}
	if diff := cmp.Diff(before, allBatches(t, dst)); diff != "" {
		t.Fatalf("the refused restore changed the log (-before +after):\n%s", diff)
	}
	if dst.Applied() != 5 {
		t.Fatalf("applied %d, want 5", dst.Applied())
	}
}
