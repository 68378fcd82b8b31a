package partition_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/partition"
)

// appliedOf answers Reconfig.Applied from the test's nodes.
func (c *cluster) appliedOf(mu *sync.Mutex) func(context.Context, partition.Server) (uint64, error) {
	return func(_ context.Context, s partition.Server) (uint64, error) {
		mu.Lock()
		defer mu.Unlock()
		for _, nd := range c.nodes {
			if nd.id == s.ID && nd.r != nil {
				return nd.r.Stats().AppliedIndex, nil
			}
		}
		return 0, fmt.Errorf("no replica %s running", s.ID)
	}
}

// reports records what Reconfigure reported and checks, at each report,
// that every server of the group's configuration is in it: the caller
// never stops a replica that is still a member.
type reports struct {
	t    *testing.T
	mu   sync.Mutex
	list []partition.Membership
}

func (rs *reports) report(r *partition.Replica) func(context.Context, partition.Membership) error {
	return func(_ context.Context, m partition.Membership) error {
		rs.mu.Lock()
		defer rs.mu.Unlock()
		if n := len(rs.list); n > 0 {
			last := rs.list[n-1]
			if m.Term < last.Term || m.Term == last.Term && m.Index < last.Index {
				rs.t.Errorf("report (%d, %d) after (%d, %d)", m.Term, m.Index, last.Term, last.Index)
			}
		}
		now, err := r.Membership()
		if err != nil {
			return err
		}
		for _, id := range now.IDs() {
			if !slices.Contains(m.IDs(), id) {
				rs.t.Errorf("reported %v while %s is in the configuration %v", m.IDs(), id, now.IDs())
			}
		}
		rs.list = append(rs.list, m)
		return nil
	}
}

// writer appends batches with distinct values to whichever node leads,
// until stopped, and keeps what was acknowledged.
type writer struct {
	c     *cluster
	nodes []*node // fixed while the writer runs
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	acked map[int64]string // base offset → value
	fails int
}

func startWriter(c *cluster) *writer {
	w := &writer{c: c, nodes: slices.Clone(c.nodes), stop: make(chan struct{}), done: make(chan struct{}), acked: map[int64]string{}}
	go w.run()
	return w
}

func (w *writer) run() {
	defer close(w.done)
	for i := 0; ; i++ {
		select {
		case <-w.stop:
			return
		default:
		}
		var l *partition.Replica
		for _, nd := range w.nodes {
			if nd.r.IsLeader() {
				l = nd.r
				break
			}
		}
		if l == nil {
			// No leader this instant: look again shortly.
			select {
			case <-w.stop:
				return
			case <-time.After(time.Millisecond):
			}
			continue
		}
		v := fmt.Sprint("w", i)
		base, err := appendWait(l, batchOf(v))
		w.mu.Lock()
		if err == nil {
			w.acked[base] = v
		} else {
			w.fails++
		}
		w.mu.Unlock()
		if err != nil && !isUnknownOrNotLeader(err) {
			w.c.t.Errorf("append: %v", err)
			return
		}
	}
}

// finish stops the writer and returns what was acknowledged.
func (w *writer) finish() map[int64]string {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked
}

// waitAcks waits until the writer has n more acknowledged writes.
func (w *writer) waitAcks(t *testing.T, n int) {
	t.Helper()
	w.mu.Lock()
	want := len(w.acked) + n
	w.mu.Unlock()
	waitFor(t, fmt.Sprintf("%d acknowledged writes", want), func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.acked) >= want
	})
}

// TestReconfigureUnderWrites moves a three-replica group to a new member
// set that leaves out the leader, while a writer keeps appending: the new
// replica joins as a nonvoter, is promoted once caught up, the others
// leave, and the old leader hands leadership over first. Every write that
// was acknowledged is, at its offset, on every replica of the new group,
// and the new group commits on its own.
func TestReconfigureUnderWrites(t *testing.T) {
	c := newCluster(t, 3, nil)
	var mu sync.Mutex // guards the nodes' r while Applied reads them
	old := c.leader()
	nw := c.newNode(t.TempDir(), "new", nil)
	c.connectAll()
	c.start(nw, nil) // not bootstrapped: it waits to be added
	if st := nw.r.Stats(); st.LastLogIndex != 0 {
		t.Fatalf("a replica started without Bootstrap has raft log up to %d", st.LastLogIndex)
	}
	w := startWriter(c)
	w.waitAcks(t, 20)

	fs := c.followers(old)
	want := []partition.Server{server(nw), server(fs[0]), server(fs[1])}
	rep := &reports{t: t}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := old.r.Reconfigure(ctx, partition.Reconfig{Want: want, Applied: c.appliedOf(&mu), Report: rep.report(old.r)})
	if !errors.Is(err, partition.ErrNotLeader) {
		t.Fatalf("reconfigure on a leader that is not wanted: %v, want ErrNotLeader after handing leadership over", err)
	}
	if old.r.IsLeader() {
		t.Fatal("the old leader still leads")
	}
	// The new leader, the first wanted server, finishes: it removes the
	// old leader.
	nl := c.leader(nw, fs[0], fs[1])
	if nl != nw {
		t.Fatalf("leadership went to %s, want the first wanted server %s", nl.id, nw.id)
	}
	if err := nl.r.Reconfigure(ctx, partition.Reconfig{Want: want, Applied: c.appliedOf(&mu), Report: rep.report(nl.r)}); err != nil {
		t.Fatal(err)
	}
	m, err := nl.r.Membership()
	if err != nil {
		t.Fatal(err)
	}
	got := m.IDs()
	slices.Sort(got)
	wantIDs := []string{fs[0].id, fs[1].id, nw.id}
	slices.Sort(wantIDs)
	if !slices.Equal(got, wantIDs) {
		t.Fatalf("membership %v, want %v", got, wantIDs)
	}
	for _, mb := range m.Members {
		if !mb.Voter {
			t.Fatalf("%s is not a voter", mb.ID)
		}
	}
	// The reports went: the group, the group with the new server planned,
	// ... and the last one is the wanted group.
	rep.mu.Lock()
	first, last := rep.list[0], rep.list[len(rep.list)-1]
	rep.mu.Unlock()
	if !slices.Contains(first.IDs(), nw.id) || !slices.Contains(first.IDs(), old.id) {
		t.Fatalf("first report %v: want the planned group with %s and %s", first.IDs(), nw.id, old.id)
	}
	if l := last.IDs(); slices.Contains(l, old.id) || len(l) != 3 {
		t.Fatalf("last report %v", l)
	}
	for _, mb := range last.Members {
		if !mb.Voter {
			t.Fatalf("last report has %s as a nonvoter", mb.ID)
		}
	}

	w.waitAcks(t, 20)
	acked := w.finish()
	// The removed replica stops, as its node drops it; the new group goes
	// on without it, and without one more of its members.
	mu.Lock()
	c.stop(old)
	mu.Unlock()
	c.converge(nw)
	for _, nd := range []*node{nw, fs[0], fs[1]} {
		vals := values(t, nd.log)
		for base, v := range acked {
			if vals[base] != v {
				t.Fatalf("%s: acknowledged %q at offset %d, found %q", nd.id, v, base, vals[base])
			}
		}
	}
	t.Logf("%d writes acknowledged, %d not", len(acked), w.fails)
	mu.Lock()
	c.stop(fs[1])
	mu.Unlock()
	l := c.leader(nw, fs[0])
	mustAppend(t, l.r, batchOf("after"))
}

// TestReconfigureWaitsForCatchUp adds a server that cannot be reached: it
// stays a nonvoter, Reconfigure waits for it until its context ends, and
// the group commits throughout without it.
func TestReconfigureWaitsForCatchUp(t *testing.T) {
	c := newCluster(t, 3, nil)
	var mu sync.Mutex
	l := c.leader()
	far := c.newNode(t.TempDir(), "far", nil)
	c.start(far, nil) // never connected
	w := startWriter(c)
	defer w.finish()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	want := []partition.Server{server(l), server(c.followers(l)[0]), server(far)}
	rep := &reports{t: t}
	// A busy machine may move leadership meanwhile: the new leader goes on.
	for {
		err := l.r.Reconfigure(ctx, partition.Reconfig{Want: want, Applied: c.appliedOf(&mu), Report: rep.report(l.r)})
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if !errors.Is(err, partition.ErrNotLeader) {
			t.Fatalf("reconfigure with an unreachable new server: %v, want the deadline", err)
		}
		l = c.leader(c.nodes[:3]...)
	}
	m, err := l.r.Membership()
	if err != nil {
		t.Fatal(err)
	}
	for _, mb := range m.Members {
		if mb.ID == far.id && mb.Voter {
			t.Fatal("the unreachable server was promoted")
		}
	}
	if len(m.Members) != 4 {
		t.Fatalf("members %v: the follower not wanted must stay until the new server is a voter", m.IDs())
	}
	w.waitAcks(t, 20)
}

// TestReconfigureFewerReplicas shrinks a group from three voters to one:
// no server joins, the others leave, and the one left commits alone.
func TestReconfigureFewerReplicas(t *testing.T) {
	c := newCluster(t, 3, nil)
	var mu sync.Mutex
	l := c.leader()
	mustAppend(t, l.r, batchOf("before"))
	rep := &reports{t: t}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := l.r.Reconfigure(ctx, partition.Reconfig{Want: []partition.Server{server(l)}, Applied: c.appliedOf(&mu), Report: rep.report(l.r)}); err != nil {
		t.Fatal(err)
	}
	for _, f := range c.followers(l) {
		c.stop(f)
	}
	if got := mustAppend(t, l.r, batchOf("alone")); got != 1 {
		t.Fatalf("offset %d, want 1", got)
	}

	for _, bad := range [][]partition.Server{nil, {server(l), server(l)}, {{ID: "x"}}} {
		if err := l.r.Reconfigure(ctx, partition.Reconfig{Want: bad, Applied: c.appliedOf(&mu), Report: rep.report(l.r)}); err == nil {
			t.Errorf("reconfigure to %v: no error", bad)
		}
	}
}

// TestReconfigureCatchUpBySnapshot adds a replica after the leader's raft
// log has dropped the entries it would need: it catches up by the snapshot
// stream, and is promoted only after that.
func TestReconfigureCatchUpBySnapshot(t *testing.T) {
	c := newCluster(t, 3, func(c *partition.ReplicaConfig) {
		c.TrailingLogs = 2
		c.SnapshotThreshold = 1 << 20 // snapshots only when the test asks
	})
	var mu sync.Mutex
	l := c.leader()
	writeN(t, c, "a", 50)
	c.converge(l)
	if err := l.r.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if first, err := l.logs.FirstIndex(); err != nil || first <= 2 {
		t.Fatalf("leader's raft log starts at %d (%v); want the early entries gone", first, err)
	}
	nw := c.newNode(t.TempDir(), "new", nil)
	c.connectAll()
	c.start(nw, nil)
	want := []partition.Server{server(l), server(nw)}
	for _, f := range c.followers(l) {
		if f != nw {
			want = append(want, server(f))
		}
	}
	rep := &reports{t: t}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := l.r.Reconfigure(ctx, partition.Reconfig{Want: want, Applied: c.appliedOf(&mu), Report: rep.report(l.r)}); err != nil {
		t.Fatal(err)
	}
	if got := nw.r.Stats().SnapshotsRestored; got != 1 {
		t.Fatalf("the new replica restored %d snapshots, want 1", got)
	}
	mustAppend(t, l.r, batchOf("after"))
	c.converge(l)
	checkOnce(t, nw, 51)
}
