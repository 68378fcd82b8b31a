package partition_test

import (
	"fmt"
	"testing"

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
