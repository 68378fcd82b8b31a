package partition_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/consumergroup"
	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/partition"
	"github.com/runnel-dev/runnel/record"
)

func leaseReq(group string, n int) partition.LeaseRequest {
	return partition.LeaseRequest{Group: group, Max: n, Visibility: time.Minute}
}

func offsets(recs []partition.LeasedRecord) []int64 {
	var out []int64
	for _, r := range recs {
		out = append(out, r.Offset)
	}
	return out
}

func ackOps(recs []partition.LeasedRecord) []consumergroup.Settle {
	var out []consumergroup.Settle
	for _, r := range recs {
		out = append(out, consumergroup.Settle{Kind: consumergroup.Ack, Offset: r.Offset, Attempt: r.Attempt, Lease: r.Lease})
	}
	return out
}

type describer interface {
	QueueGroups(group string) ([]partition.QueueGroupInfo, error)
}

// queueGroups returns d's description of group, failing the test on an
// error.
func queueGroups(t *testing.T, d describer, group string) []partition.QueueGroupInfo {
	t.Helper()
	info, err := d.QueueGroups(group)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

type settler interface {
	Settle(group string, ops []consumergroup.Settle) ([]error, error)
}

// ackAll acks recs and fails unless every ack succeeds.
func ackAll(t *testing.T, s settler, group string, recs []partition.LeasedRecord) {
	t.Helper()
	errs, err := s.Settle(group, ackOps(recs))
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range errs {
		if e != nil {
			t.Fatalf("settle %d: %v", i, e)
		}
	}
}

// TestPartitionQueue leases, settles and reopens a queue group on a single
// node: the state is on disk before an answer, records read back with their
// values, and a deliver-at header holds a record back.
func TestPartitionQueue(t *testing.T) {
	dir := t.TempDir()
	open := func() (*log.Store, *partition.Partition) {
		s, err := log.Open(dir, log.Options{RetentionInterval: -1, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		l, err := s.Log(logID)
		if err != nil {
			t.Fatal(err)
		}
		return s, partition.New(l, partition.Options{})
	}
	s, p := open()
	later := time.Now().Add(time.Hour).UnixMilli()
	b := record.Encode(
		record.Record{Value: []byte("a")},
		record.Record{Value: []byte("b"), Headers: []record.Header{{Key: partition.DeliverAtHeader, Value: fmt.Append(nil, later)}}},
		record.Record{Value: []byte("c")},
	)
	if _, err := p.Log().Append(b); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	got, err := p.Lease(ctx, leaseReq("g", 10), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(offsets(got), []int64{0, 2}) || string(got[0].Value) != "a" || got[0].Attempt != 1 {
		t.Fatalf("leased %v, want offsets 0 and 2 (1 waits for its deliver-at time)", offsets(got))
	}
	ackAll(t, p, "g", got[:1])
	errs, err := p.Settle("g", ackOps(got[:1]))
	if err != nil || !errors.Is(errs[0], consumergroup.ErrSettled) {
		t.Fatalf("second ack: %v, %v; want ErrSettled", errs, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, p = open()
	defer s.Close()
	info := queueGroups(t, p, "g")
	if len(info) != 1 || info[0].Start != 1 || info[0].Next != 3 || info[0].Leased != 1 || info[0].Delayed != 1 {
		t.Fatalf("after reopen: %+v", info)
	}
	// The lease on 2 survived the restart and settles.
	ackAll(t, p, "g", got[1:])
	if err := p.ResetQueue("g", 0); err != nil {
		t.Fatal(err)
	}
	again, err := p.Lease(ctx, leaseReq("g", 10), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(offsets(again), []int64{0, 2}) {
		t.Fatalf("after rewind leased %v, want 0 and 2", offsets(again))
	}
	// Lease numbers keep growing across the reopen, so that a settle of a
	// lease from before it never matches a lease made after.
	if got[0].Lease == 0 || got[1].Lease <= got[0].Lease || again[0].Lease <= got[1].Lease || again[1].Lease <= again[0].Lease {
		t.Fatalf("lease numbers %d, %d, then after the reopen %d, %d: want them growing", got[0].Lease, got[1].Lease, again[0].Lease, again[1].Lease)
	}
	if _, err := p.Lease(ctx, partition.LeaseRequest{Group: "g", Max: 0, Visibility: time.Second}, 0); !errors.Is(err, partition.ErrInvalidQueueRequest) {
		t.Fatalf("lease of 0 records: %v", err)
	}
	if _, err := p.Lease(ctx, partition.LeaseRequest{Group: "g", Max: 1, Visibility: time.Second, Config: consumergroup.QueueConfig{KeyOrdering: true}}, 0); !errors.Is(err, consumergroup.ErrQueueConfig) {
		t.Fatalf("lease with another config: %v", err)
	}
	// A group a seek created takes the configuration of its first lease.
	if err := p.ResetQueue("h", 2); err != nil {
		t.Fatal(err)
	}
	ordered := partition.LeaseRequest{Group: "h", Max: 5, Visibility: time.Second, Config: consumergroup.QueueConfig{KeyOrdering: true}}
	if got, err := p.Lease(ctx, ordered, 0); err != nil || !slices.Equal(offsets(got), []int64{2}) {
		t.Fatalf("first lease of a group created by a seek: %v, %v", offsets(got), err)
	}
	if info := queueGroups(t, p, "h"); len(info) != 1 || !info[0].Config.KeyOrdering {
		t.Fatalf("group created by a seek: %+v", info)
	}
}

// TestPartitionQueueLongPoll shows a waiting lease answered by an append.
func TestPartitionQueueLongPoll(t *testing.T) {
	s, err := log.Open(t.TempDir(), log.Options{RetentionInterval: -1, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, err := s.Log(logID)
	if err != nil {
		t.Fatal(err)
	}
	p := partition.New(l, partition.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Create the group so that the lease below waits.
	if got, err := p.Lease(ctx, leaseReq("g", 1), 0); err != nil || len(got) != 0 {
		t.Fatalf("lease of an empty partition: %v, %v", got, err)
	}
	done := make(chan []partition.LeasedRecord, 1)
	go func() {
		got, err := p.Lease(ctx, leaseReq("g", 1), time.Minute)
		if err != nil {
			t.Error(err)
		}
		done <- got
	}()
	// Append only once the lease waits, so that the append is what
	// answers it.
	waitFor(t, "the lease to wait", func() bool { return p.QueueParked() == 1 })
	if _, err := l.Append(batchOf("x")); err != nil {
		t.Fatal(err)
	}
	if got := <-done; len(got) != 1 || string(got[0].Value) != "x" {
		t.Fatalf("long poll got %v", offsets(got))
	}
}

// TestReplicaQueueFailover leases and acks on a leader, stops it, and
// settles the other leases on the new leader: acked records are not
// delivered again, leased ones keep their lease, and the state is the same
// on every replica.
func TestReplicaQueueFailover(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.leader()
	for i := range 10 {
		mustAppend(t, l.r, batchOf(fmt.Sprint("v", i)))
	}
	ctx := context.Background()
	got, err := l.r.Lease(ctx, leaseReq("g", 6), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(offsets(got), []int64{0, 1, 2, 3, 4, 5}) {
		t.Fatalf("leased %v", offsets(got))
	}
	ackAll(t, l.r, "g", got[:3])
	// Queue entries do not move the log's end: wait for every replica to
	// apply them.
	for _, nd := range c.running() {
		waitFor(t, nd.id+"'s queue state", func() bool {
			info := queueGroups(t, nd.r, "g")
			return len(info) == 1 && info[0].Start == 3 && info[0].Next == 6 && info[0].Leased == 3
		})
	}
	c.stop(l)
	nl := c.leader()
	ackAll(t, nl.r, "g", got[3:])
	rest, err := nl.r.Lease(ctx, leaseReq("g", 10), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(offsets(rest), []int64{6, 7, 8, 9}) {
		t.Fatalf("after failover leased %v, want 6 to 9", offsets(rest))
	}
	// A follower refuses, naming the leader.
	f := c.followers(nl)[0]
	if _, err := f.r.Lease(ctx, leaseReq("g", 1), 0); !errors.Is(err, partition.ErrNotLeader) {
		t.Fatalf("lease on a follower: %v", err)
	}
	// The stopped replica comes back with the same state.
	c.restart(l)
	c.converge(nl)
	want := queueGroups(t, nl.r, "g")
	waitFor(t, "the restarted replica's queue state", func() bool {
		return fmt.Sprint(queueGroups(t, l.r, "g")) == fmt.Sprint(want)
	})
}

// TestReplicaEmptyLeaseWritesNothing shows that a lease with nothing to
// hand out, at once or when its long poll ends, adds no raft entry, and
// that a lease with a configuration the group does not have fails without
// waiting out its long poll; a lease that finds a record still takes it.
func TestReplicaEmptyLeaseWritesNothing(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.leader()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The first lease creates the group: that is an entry.
	if got, err := l.r.Lease(ctx, leaseReq("g", 1), 0); err != nil || len(got) != 0 {
		t.Fatalf("first lease: %v, %v", offsets(got), err)
	}
	before := l.r.RaftLastIndex()
	for _, wait := range []time.Duration{0, 20 * time.Millisecond} {
		if got, err := l.r.Lease(ctx, leaseReq("g", 1), wait); err != nil || len(got) != 0 {
			t.Fatalf("empty lease waiting %v: %v, %v", wait, offsets(got), err)
		}
	}
	conflict := partition.LeaseRequest{Group: "g", Max: 1, Visibility: time.Minute, Config: consumergroup.QueueConfig{KeyOrdering: true}}
	if _, err := l.r.Lease(ctx, conflict, time.Minute); !errors.Is(err, consumergroup.ErrQueueConfig) {
		t.Fatalf("lease with another configuration: %v, want ErrQueueConfig", err)
	}
	if after := l.r.RaftLastIndex(); after != before {
		t.Fatalf("empty leases moved the raft log from index %d to %d", before, after)
	}
	mustAppend(t, l.r, batchOf("x"))
	if got, err := l.r.Lease(ctx, leaseReq("g", 1), 0); err != nil || len(got) != 1 || string(got[0].Value) != "x" {
		t.Fatalf("lease after an append: %v, %v", offsets(got), err)
	}
}

// TestReplicaQueueSnapshot brings a follower that missed queue entries up
// to date by a snapshot: it has the leader's leases.
func TestReplicaQueueSnapshot(t *testing.T) {
	c := newCluster(t, 3, func(c *partition.ReplicaConfig) {
		c.TrailingLogs = 2
		c.SnapshotThreshold = 1 << 20
	})
	l := c.leader()
	for i := range 5 {
		mustAppend(t, l.r, batchOf(fmt.Sprint("v", i)))
	}
	c.converge(l)
	f := c.followers(l)[0]
	c.stop(f)
	ctx := context.Background()
	got, err := l.r.Lease(ctx, leaseReq("g", 4), 0)
	if err != nil {
		t.Fatal(err)
	}
	ackAll(t, l.r, "g", got[:2])
	for i := range 5 {
		mustAppend(t, l.r, batchOf(fmt.Sprint("w", i)))
	}
	c.converge(l)
	o := c.catchUpBySnapshot(l, f)
	waitFor(t, "the restored follower's queue state", func() bool {
		return fmt.Sprint(queueGroups(t, f.r, "g")) == fmt.Sprint(queueGroups(t, o.r, "g"))
	})
	if err := o.r.TransferLeadershipTo(server(f)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the restored follower to lead", func() bool { return f.r.IsLeader() })
	ackAll(t, f.r, "g", got[2:])
	errs, err := f.r.Settle("g", ackOps(got[:1]))
	if err != nil || !errors.Is(errs[0], consumergroup.ErrSettled) {
		t.Fatalf("ack of a record acked before the snapshot: %v, %v", errs, err)
	}
}

// TestPartitionQueueRetention leases records that retention removes
// before they are delivered again: they are settled, not handed out, and
// the group moves on to the records still stored.
func TestPartitionQueueRetention(t *testing.T) {
	s, err := log.Open(t.TempDir(), log.Options{RetentionInterval: -1, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, err := s.Log(logID)
	if err != nil {
		t.Fatal(err)
	}
	p := partition.New(l, partition.Options{})
	for i := range 4 {
		if _, err := l.Append(batchOf(fmt.Sprint("v", i))); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	got, err := p.Lease(ctx, leaseReq("g", 2), 0)
	if err != nil {
		t.Fatal(err)
	}
	nacks := []consumergroup.Settle{
		{Kind: consumergroup.Nack, Offset: got[0].Offset, Attempt: got[0].Attempt},
		{Kind: consumergroup.Nack, Offset: got[1].Offset, Attempt: got[1].Attempt},
	}
	if _, err := p.Settle("g", nacks); err != nil {
		t.Fatal(err)
	}
	l.SetRetention(log.Retention{MaxBytes: l.Size() / 2})
	if err := l.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	start := l.Start()
	if start == 0 {
		t.Fatal("retention dropped nothing")
	}
	again, err := p.Lease(ctx, leaseReq("g", 10), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) == 0 || again[0].Offset != start {
		t.Fatalf("after retention leased %v, want from %d on", offsets(again), start)
	}
	if info := queueGroups(t, p, "g"); info[0].Start < start {
		t.Fatalf("group still holds removed records: %+v", info[0])
	}
}

// TestPartitionQueueScanCache checks that each queue group reads the log
// through its own cache: two groups far apart that lease in turn read it
// once each, a lease at the end reads nothing, and a deleted group's cache
// goes with it.
func TestPartitionQueueScanCache(t *testing.T) {
	p := openPartition(t, partition.Options{})
	// 40 batches of 16 KiB: one cache fill holds about 16 of them.
	const n = 40
	for i := range n {
		pd, err := p.Append(record.Encode(record.Record{Value: make([]byte, 16<<10), Key: []byte(fmt.Sprint("k", i))}), partition.AcksAll)
		if err != nil {
			t.Fatal(err)
		}
		if err := pd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	if err := p.ResetQueue("b", 30); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		for _, g := range []struct {
			name string
			want int64
		}{{"a", int64(i)}, {"b", int64(30 + i)}} {
			got, err := p.Lease(ctx, leaseReq(g.name, 1), 0)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(offsets(got), []int64{g.want}) {
				t.Fatalf("group %s leased %v, want %d", g.name, offsets(got), g.want)
			}
		}
	}
	if caches, reads := p.QueueScans(); caches != 2 || reads != 2 {
		t.Fatalf("after leases in turn: %d caches, %d reads; want 2 and 2", caches, reads)
	}

	// Group c takes the last records; its leases at the end read nothing
	// more.
	if err := p.ResetQueue("c", n-2); err != nil {
		t.Fatal(err)
	}
	if got, err := p.Lease(ctx, leaseReq("c", 2), 0); err != nil || len(got) != 2 {
		t.Fatalf("lease of the last two records: %v, %v", offsets(got), err)
	}
	_, before := p.QueueScans()
	for range 3 {
		if got, err := p.Lease(ctx, leaseReq("c", 1), 0); err != nil || len(got) != 0 {
			t.Fatalf("lease at the end: %v, %v", offsets(got), err)
		}
	}
	if _, after := p.QueueScans(); after != before {
		t.Fatalf("leases at the end read the log %d times", after-before)
	}

	if err := p.DeleteQueue("b"); err != nil {
		t.Fatal(err)
	}
	if caches, _ := p.QueueScans(); caches != 2 {
		t.Fatalf("after deleting b: %d caches, want 2", caches)
	}
}

// TestPartitionQueueLoadError checks that a queue state that does not load
// is reported, naming the partition, rather than shown as no groups.
func TestPartitionQueueLoadError(t *testing.T) {
	p := openPartition(t, partition.Options{})
	// A queue group header ('Q' and the group's name) that does not decode.
	wait, err := p.Log().WriteState([]log.StateOp{{Key: []byte("Qg"), Value: []byte("junk")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	for _, group := range []string{"", "g"} {
		info, err := p.QueueGroups(group)
		if err == nil || !strings.Contains(err.Error(), "partition "+p.Log().ID().String()) {
			t.Fatalf("describe of %q over a bad queue state: %v, %v; want an error naming the partition", group, info, err)
		}
	}
	if _, err := p.Lease(context.Background(), leaseReq("g", 1), 0); err == nil {
		t.Fatal("lease over a bad queue state succeeded")
	}
}
