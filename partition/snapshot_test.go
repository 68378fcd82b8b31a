package partition_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/partition"
	"github.com/runnel-dev/runnel/record"
)

// TestSnapshotCatchUp stops a follower, writes until the others' raft logs
// no longer hold what it misses, and brings it back: it catches up by
// InstallSnapshot, streamed from the leader's log, and ends with the same
// batches at the same offsets, and the same producer state.
func TestSnapshotCatchUp(t *testing.T) {
	c := newCluster(t, 3, func(c *partition.ReplicaConfig) {
		c.TrailingLogs = 2
		c.SnapshotThreshold = 1 << 20 // snapshots only when the test asks
	})
	l := c.leader()
	writeN(t, c, "a", 5)
	c.converge(l)

	f := c.followers(l)[0]
	c.stop(f)
	missed, err := f.logs.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	// Batches of several sizes, an idempotent producer and message ids,
	// so that the snapshot carries producer state.
	var last record.Batch
	var lastBase int64
	seq := int32(0)
	for i := range 30 {
		vals := make([]string, 1+i%7)
		for j := range vals {
			vals[j] = fmt.Sprint("b", i, "-", j)
		}
		last = producerBatch(77, 1, seq, vals...)
		lastBase = mustAppend(t, l.r, last)
		seq += int32(len(vals))
	}
	idBase := mustAppend(t, l.r, msgBatch(5000, "once"))
	c.converge(l) // the snapshots below are then all at the same entry
	for _, nd := range c.running() {
		if err := nd.r.Snapshot(); err != nil {
			t.Fatal(err)
		}
	}
	first, err := l.logs.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	if first <= missed+1 {
		t.Fatalf("leader's raft log starts at %d; the stopped follower needs %d", first, missed+1)
	}
	// Retention trims the front of the live replicas' logs alike: the
	// stream starts where the leader's log now starts.
	for _, nd := range c.running() {
		nd.log.SetRetention(log.Retention{MaxBytes: nd.log.Size() / 2})
		if err := nd.log.EnforceRetention(); err != nil {
			t.Fatal(err)
		}
	}
	if l.log.Start() == 0 {
		t.Fatal("retention dropped nothing")
	}

	c.restart(f)
	// The leader backs off from a follower it failed to reach, for up to
	// ten seconds; a new leader starts afresh. It has no log entries for
	// the follower either.
	o := c.followers(l)[0]
	if o == f {
		o = c.followers(l)[1]
	}
	if err := l.r.TransferLeadershipTo(server(o)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the follower to install a snapshot", func() bool { return f.r.Stats().SnapshotsRestored == 1 })
	c.converge(o)
	if f.log.Start() != o.log.Start() {
		t.Fatalf("follower starts at %d, leader at %d", f.log.Start(), o.log.Start())
	}
	mustAppend(t, o.r, batchOf("after"))
	c.converge(o)

	// The follower has the producer state too: make it the leader and
	// retry a batch and a message id.
	if err := o.r.TransferLeadershipTo(server(f)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the follower to lead", func() bool { return f.r.IsLeader() })
	if got := mustAppend(t, f.r, last); got != lastBase {
		t.Fatalf("retry of the producer's last batch on the restored follower: offset %d, want %d", got, lastBase)
	}
	mustAppend(t, f.r, producerBatch(77, 1, seq, "next"))
	if got := mustAppend(t, f.r, msgBatch(5001, "once")); got != idBase {
		t.Fatalf("message id on the restored follower: offset %d, want %d", got, idBase)
	}

	// A restart on the received snapshot restores nothing again.
	c.stop(f)
	c.restart(f)
	if got := f.r.Stats().SnapshotsRestored; got != 0 {
		t.Fatalf("%d snapshots restored on restart", got)
	}
	nl := c.leader()
	mustAppend(t, nl.r, batchOf("end"))
	c.converge(nl)
}

// TestSnapshotCatchUpSendsOnlyWhatIsMissing stops a follower, writes until
// the others' raft logs no longer hold what it misses, and brings it back:
// the leader asks it where its log ends (PeerLogEnd) and the snapshot
// carries only the batches after that. The follower ends with the same
// batches as the leader, and a later snapshot from it to another replica
// carries the whole partition again.
func TestSnapshotCatchUpSendsOnlyWhatIsMissing(t *testing.T) {
	var (
		mu     sync.Mutex
		logs   = map[string]*log.Log{} // each node's log, as PeerLogEnd reads it
		asked  = map[string]int64{}
		big    = strings.Repeat("x", 4096)
		values = func(tag string, i int) []string { return []string{fmt.Sprint(tag, i, "-", big)} }
	)
	c := newCluster(t, 3, func(cfg *partition.ReplicaConfig) {
		cfg.TrailingLogs = 2
		cfg.SnapshotThreshold = 1 << 20 // snapshots only when the test asks
		cfg.PeerLogEnd = func(_ context.Context, s partition.Server) (int64, error) {
			mu.Lock()
			defer mu.Unlock()
			l := logs[s.ID]
			if l == nil {
				return 0, fmt.Errorf("node %s has no log", s.ID)
			}
			end := l.End()
			if err := l.Sync(); err != nil {
				return 0, err
			}
			asked[s.ID] = end
			return end, nil
		}
	})
	setLog := func(nd *node) {
		mu.Lock()
		logs[nd.id] = nd.log
		mu.Unlock()
	}
	for _, nd := range c.nodes {
		setLog(nd)
	}
	l := c.leader()
	for i := range 20 {
		mustAppend(t, l.r, batchOf(values("a", i)...))
	}
	c.converge(l)

	f := c.followers(l)[0]
	c.stop(f)
	had := f.log.End()
	for i := range 10 {
		mustAppend(t, l.r, batchOf(values("b", i)...))
	}
	c.converge(l)
	o := c.catchUpBySnapshot(l, f)
	mu.Lock()
	got, ok := asked[f.id]
	mu.Unlock()
	if !ok || got != had {
		t.Fatalf("the leader asked the follower's log end: %v, %d; want %d", ok, got, had)
	}
	if diff := cmp.Diff(partition.AllBatches(t, o.log), partition.AllBatches(t, f.log)); diff != "" {
		t.Fatalf("follower's batches differ from the leader's (-leader +follower):\n%s", diff)
	}
	// What the follower received: the batches after its end, not the 20
	// it had.
	missing, err := o.log.RangeSize(had, o.log.End())
	if err != nil {
		t.Fatal(err)
	}
	whole, err := o.log.RangeSize(o.log.Start(), o.log.End())
	if err != nil {
		t.Fatal(err)
	}
	received := latestSnapshotSize(t, f)
	if received < missing || received > missing+4096 {
		t.Fatalf("the follower received a snapshot of %d bytes; the batches it lacked are %d bytes, the partition %d", received, missing, whole)
	}

	// The follower, leading, sends a replica that lost everything the
	// whole partition from its log, though its newest snapshot was partial.
	mustAppend(t, o.r, batchOf("after"))
	c.converge(o)
	if err := o.r.TransferLeadershipTo(server(f)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the follower to lead", func() bool { return f.r.IsLeader() })
	c.stop(l)
	mu.Lock()
	delete(logs, l.id)
	mu.Unlock()
	c.wipe(l)
	setLog(l)
	for i := range 5 {
		mustAppend(t, f.r, batchOf(values("c", i)...))
	}
	c.restart(l)
	waitFor(t, "the wiped replica to install a snapshot", func() bool { return l.r.Stats().SnapshotsRestored == 1 })
	c.converge(f)
	if diff := cmp.Diff(partition.AllBatches(t, f.log), partition.AllBatches(t, l.log)); diff != "" {
		t.Fatalf("wiped replica's batches differ from the leader's (-leader +replica):\n%s", diff)
	}
}

// latestSnapshotSize returns the size of nd's newest raft snapshot.
func latestSnapshotSize(t *testing.T, nd *node) int64 {
	t.Helper()
	files, err := raft.NewFileSnapshotStoreWithLogger(nd.snapDir, 2, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	metas, err := files.List()
	if err != nil || len(metas) == 0 {
		t.Fatalf("snapshots of %s: %v, %v", nd.id, metas, err)
	}
	return metas[0].Size
}

// TestSnapshotGoesWholeWhenTheFollowerDoesNotAnswer has a PeerLogEnd that
// always fails: the leader holds the snapshot back a few times, then
// sends it whole, and the follower catches up. A follower that cannot
// report its log end at all (ErrNoLogEnd) gets it whole at once.
func TestSnapshotGoesWholeWhenTheFollowerDoesNotAnswer(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		min, max int32
	}{
		{"down", errors.New("no answer"), 3, 100},
		{"older version", fmt.Errorf("node 3: %w", partition.ErrNoLogEnd), 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var asked atomic.Int32
			c := newCluster(t, 3, func(cfg *partition.ReplicaConfig) {
				cfg.TrailingLogs = 2
				cfg.SnapshotThreshold = 1 << 20
				cfg.PeerLogEnd = func(context.Context, partition.Server) (int64, error) {
					asked.Add(1)
					return 0, tc.err
				}
			})
			l := c.leader()
			writeN(t, c, "a", 5)
			c.converge(l)
			f := c.followers(l)[0]
			c.stop(f)
			writeN(t, c, "b", 20)
			c.converge(l)
			o := c.catchUpBySnapshot(l, f)
			if n := asked.Load(); n < tc.min || n > tc.max {
				t.Fatalf("the leader asked the follower %d times before sending the snapshot whole, want %d to %d", n, tc.min, tc.max)
			}
			if diff := cmp.Diff(partition.AllBatches(t, o.log), partition.AllBatches(t, f.log)); diff != "" {
				t.Fatalf("follower's batches differ from the leader's (-leader +follower):\n%s", diff)
			}
		})
	}
}
