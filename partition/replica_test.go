package partition_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/runnel-dev/runnel/partition"
	"github.com/runnel-dev/runnel/record"
)

func TestReplicasAgree(t *testing.T) {
	// Raft may elect again under a loaded machine; a run that loses its
	// leader proves nothing either way, so it is run again on a new group.
	for attempt := 1; ; attempt++ {
		if replicasAgree(t) {
			return
		}
		if attempt == 3 {
			t.Fatal("leadership moved in three runs in a row")
		}
		t.Logf("run %d: leadership moved; again on a new group", attempt)
	}
}

// replicasAgree appends 50 batches on the leader and checks that every
// replica holds them, in order, at the same offsets. It reports false when
// leadership moved during the run.
func replicasAgree(t *testing.T) bool {
	c := newCluster(t, 3, nil)
	l := c.leader()

	// One goroutine proposes, in order; the waits overlap.
	var pending []partition.Pending
	var want int64
	for i := range 50 {
		b := batchOf(fmt.Sprint(i, "a"), fmt.Sprint(i, "b"))
		pd, err := l.r.Append(b, partition.AcksAll)
		if errors.Is(err, partition.ErrNotLeader) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		if pd.Base != -1 {
			t.Fatalf("a replica's Pending has Base %d before commit", pd.Base)
		}
		pending = append(pending, pd)
	}
	for i, pd := range pending {
		base, err := pd.WaitOffset()
		if errors.Is(err, partition.ErrNotLeader) || errors.Is(err, partition.ErrOutcomeUnknown) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		if base != want {
			t.Fatalf("batch %d at offset %d, want %d", i, base, want)
		}
		want += 2
	}
	c.converge(l)
	for _, nd := range c.nodes {
		vals := values(t, nd.log)
		if len(vals) != 100 || vals[0] != "0a" || vals[99] != "49b" {
			t.Fatalf("%s holds %d records: %v ... %v", nd.id, len(vals), vals[0], vals[99])
		}
	}
	return true
}

func TestAppendOnFollower(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.leader()
	f := c.followers(l)[0]
	waitFor(t, "the follower to know the leader", func() bool {
		s, ok := f.r.Leader()
		return ok && s.ID == l.id
	})
	_, err := f.r.Append(batchOf("x"), partition.AcksAll)
	var nl *partition.NotLeaderError
	if !errors.As(err, &nl) || !errors.Is(err, partition.ErrNotLeader) {
		t.Fatalf("append on a follower: %v, want a NotLeaderError", err)
	}
	if nl.LeaderID != l.id || nl.LeaderAddr != string(l.addr) {
		t.Fatalf("leader hint %+v, want %s at %s", nl, l.id, l.addr)
	}
}

func TestBadBatch(t *testing.T) {
	c := newCluster(t, 1, nil)
	l := c.leader()
	b := batchOf("abc")
	b[len(b)-1] ^= 1
	if _, err := l.r.Append(b, partition.AcksAll); !errors.Is(err, record.ErrCorrupt) {
		t.Fatalf("corrupt batch: %v", err)
	}
	// A producer id without a sequence number is not a valid batch either.
	bad := producerBatch(7, 0, -1, "x")
	if _, err := l.r.Append(bad, partition.AcksAll); !errors.Is(err, record.ErrCorrupt) {
		t.Fatalf("producer batch without a sequence: %v", err)
	}
	if l.log.End() != 0 {
		t.Fatalf("end %d after rejected batches", l.log.End())
	}
}

// TestMinorityLeaderNeverAcks isolates the leader: what it accepts is never
// acknowledged, the majority goes on under a new leader, and after the heal
// the old leader's uncommitted entries are gone.
func TestMinorityLeaderNeverAcks(t *testing.T) {
	c := newCluster(t, 3, nil)
	old := c.leader()
	mustAppend(t, old.r, batchOf("before"))
	c.converge(old)

	c.isolate(old)
	// The old leader still believes it leads for up to a lease timeout;
	// whatever it accepts now cannot commit.
	var stale []partition.Pending
	for i := range 5 {
		pd, err := old.r.Append(batchOf(fmt.Sprint("stale", i)), partition.AcksAll)
		if err != nil {
			if !errors.Is(err, partition.ErrNotLeader) {
				t.Fatalf("append on the isolated leader: %v", err)
			}
			break
		}
		stale = append(stale, pd)
	}
	if len(stale) == 0 {
		t.Log("the isolated leader stepped down before the first append")
	}

	nl := c.leader(c.followers(old)...)
	if _, err := appendWait(nl.r, batchOf("after")); err != nil {
		t.Fatalf("append on the new leader: %v", err)
	}
	for i, pd := range stale {
		if base, err := pd.WaitOffset(); !errors.Is(err, partition.ErrOutcomeUnknown) {
			t.Fatalf("stale append %d on the isolated leader: offset %d, %v; want ErrOutcomeUnknown", i, base, err)
		}
	}

	c.connectAll()
	c.converge(nl)
	got := values(t, old.log)
	want := map[int64]string{0: "before", 1: "after"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("the old leader's log after the heal (-want +got):\n%s", diff)
	}
}

// TestOneLeaderPerTerm writes through whichever replica leads while the
// leader is cut off and healed again and again, and checks that every
// acknowledged batch came from the one leader of its term and is in every
// log at the offset it was acknowledged with.
func TestOneLeaderPerTerm(t *testing.T) {
	c := newCluster(t, 3, nil)
	var got acks
	stop := make(chan struct{})
	done := make(chan struct{})
	for _, nd := range c.nodes {
		r := nd.r
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				b := batchOf(fmt.Sprint(nd.id, "-", i))
				pd, err := r.Append(b, partition.AcksAll)
				if err != nil {
					if !errors.Is(err, partition.ErrNotLeader) && !errors.Is(err, partition.ErrBacklogFull) {
						t.Errorf("append on %s: %v", nd.id, err)
						return
					}
					select {
					case <-r.LeaderChanged():
					case <-stop:
						return
					}
					continue
				}
				base, err := pd.WaitOffset()
				if err != nil {
					if !errors.Is(err, partition.ErrOutcomeUnknown) {
						t.Errorf("wait on %s: %v", nd.id, err)
						return
					}
					continue
				}
				term, _ := partition.EntryOf(pd)
				got.add(ack{node: nd.id, term: term, base: base, batch: b})
			}
		}()
	}
	for range 3 {
		l := c.leader()
		got.mu.Lock()
		n := len(got.list)
		got.mu.Unlock()
		waitFor(t, "acks from "+l.id, func() bool {
			got.mu.Lock()
			defer got.mu.Unlock()
			return len(got.list) > n+5
		})
		c.isolate(l)
		nl := c.leader(c.followers(l)...)
		waitFor(t, "acks from the new leader", func() bool {
			got.mu.Lock()
			defer got.mu.Unlock()
			k := len(got.list)
			return k > 0 && got.list[k-1].node == nl.id
		})
		c.connectAll()
	}
	close(stop)
	for range c.nodes {
		<-done
	}

	leaderOf := make(map[uint64]string)
	for _, a := range got.list {
		if prev, ok := leaderOf[a.term]; ok && prev != a.node {
			t.Fatalf("term %d: both %s and %s acknowledged appends", a.term, prev, a.node)
		}
		leaderOf[a.term] = a.node
	}
	if len(leaderOf) < 4 {
		t.Fatalf("acks came from %d terms, want at least 4: %v", len(leaderOf), leaderOf)
	}
	l := c.leader()
	c.converge(l)
	vals := values(t, l.log)
	for _, a := range got.list {
		want, err := a.batch.Records()
		if err != nil {
			t.Fatal(err)
		}
		if v := vals[a.base]; v != string(want[0].Value) {
			t.Fatalf("acknowledged %q at offset %d, log has %q", want[0].Value, a.base, v)
		}
	}
	t.Logf("%d acks over terms %v", len(got.list), leaderOf)
}

func TestLeadership(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.leader()
	changed := l.r.LeaderChanged()
	if err := l.r.LeadershipTransfer(); err != nil {
		t.Fatal(err)
	}
	<-changed
	nl := c.leader()
	if nl == l {
		t.Fatal("leadership did not move")
	}
	// Raft sets its state before it records itself as the leader.
	waitFor(t, "the new leader's stats to name it", func() bool {
		st := nl.r.Stats()
		return st.State == "Leader" && st.Leader.ID == nl.id && st.Term > 0
	})
	mustAppend(t, nl.r, batchOf("x"))
	waitFor(t, "followers to apply", func() bool {
		for _, f := range c.followers(nl) {
			if f.r.Stats().LogApplied != nl.r.Stats().LogApplied {
				return false
			}
		}
		return true
	})

	// A fourth replica joins without bootstrapping and catches up.
	nd := c.newNode(t.TempDir(), "n3", nil)
	c.start(nd, nil)
	c.connectAll()
	if err := nl.r.AddVoter(partition.Server{ID: nd.id, Addr: string(nd.addr)}); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, nl.r, batchOf("y"))
	c.converge(nl)
	servers, err := nl.r.Servers()
	if err != nil || len(servers) != 4 {
		t.Fatalf("servers after AddVoter: %v, %v", servers, err)
	}

	if err := nl.r.RemoveServer(nd.id); err != nil {
		t.Fatal(err)
	}
	if servers, err := nl.r.Servers(); err != nil || len(servers) != 3 {
		t.Fatalf("servers after RemoveServer: %v, %v", servers, err)
	}
	waitFor(t, "the removed replica to step down", func() bool { return !nd.r.IsLeader() })
	if err := nd.r.AddVoter(partition.Server{ID: "x", Addr: "x"}); !errors.Is(err, partition.ErrNotLeader) {
		t.Fatalf("AddVoter on a removed replica: %v", err)
	}
}

func TestClose(t *testing.T) {
	c := newCluster(t, 1, nil)
	l := c.leader()
	mustAppend(t, l.r, batchOf("x"))
	r := l.r
	changed := r.LeaderChanged()
	c.stop(l)
	<-changed // Close wakes LeaderChanged waiters
	if _, err := r.Append(batchOf("y"), partition.AcksAll); !errors.Is(err, partition.ErrClosed) {
		t.Fatalf("append after Close: %v", err)
	}
	if err := r.Close(); !errors.Is(err, partition.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	// Reads keep working on the log.
	if got := values(t, r.Log()); got[0] != "x" {
		t.Fatalf("log after Close: %v", got)
	}
}

// TestTransferSettlesProposals checks that a leadership transfer leaves no
// proposal unanswered: raft refuses proposals it dequeues while a transfer
// runs, and when the transfer fails nothing else would end their waits.
func TestTransferSettlesProposals(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.leader()
	f := c.followers(l)[0]
	for round := range 3 {
		c.isolate(f)
		var pds []partition.Pending
		for i := range 64 {
			pd, err := l.r.Append(batchOf(fmt.Sprintf("r%d-%d", round, i)), partition.AcksAll)
			if err != nil {
				t.Fatalf("append before the transfer: %v", err)
			}
			pds = append(pds, pd)
		}
		// The target is cut off, so the transfer fails and l stays leader.
		if err := l.r.TransferLeadershipTo(server(f)); err == nil {
			t.Fatalf("round %d: transfer to an unreachable replica succeeded; leader now %v", round, l.r.IsLeader())
		}
		for i, pd := range pds {
			done := make(chan error, 1)
			go func() { done <- pd.Wait() }()
			select {
			case err := <-done:
				if err != nil && !isUnknownOrNotLeader(err) {
					t.Fatalf("round %d append %d: %v", round, i, err)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("round %d append %d: never answered after a failed transfer", round, i)
			}
		}
		c.connectAll()
		if !l.r.IsLeader() {
			l = c.leader()
			f = c.followers(l)[0]
		}
	}
	mustAppend(t, l.r, batchOf("after"))
}
