package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/internal/testcluster"
)

// startWithTopic skips in -short mode, or starts a three-node cluster and
// an admin client, with topic created with one partition and three
// replicas, and a context that ends after two minutes.
func startWithTopic(t *testing.T, topic string) (context.Context, []string, *client.Client, client.TopicInfo) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	addrs := testcluster.Start(t, ctx)
	admin := testcluster.Client(t, ctx, addrs...)
	info, err := admin.CreateTopic(ctx, topic, 1, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ctx, addrs, admin, info
}

// moveLeader makes node to the preferred replica of topic/0, so that its
// leader hands over to it, and waits until the cluster names it leader.
func moveLeader(t *testing.T, ctx context.Context, admin *client.Client, topic string, replicas []int32, to int32) {
	t.Helper()
	order := []int32{to}
	for _, r := range replicas {
		if r != to {
			order = append(order, r)
		}
	}
	if _, _, err := admin.ReassignPartition(ctx, topic, 0, order); err != nil {
		t.Fatalf("reassign %s/0 to %v: %v", topic, order, err)
	}
	waitFor(t, fmt.Sprintf("node %d to lead %s/0", to, topic), time.Minute, func() bool {
		info, err := admin.DescribeTopic(ctx, topic)
		return err == nil && info.Partitions[0].Leader == to
	})
}

// TestReadsFollowTheLeader runs a three-node cluster and moves a
// partition's leadership around. A client whose metadata still names the
// former leader reads the new leader's end offset, not the former
// leader's copy; a consumer long-polling on the former leader goes on
// reading from the new one; group lag counts against the leader's end.
func TestReadsFollowTheLeader(t *testing.T) {
	ctx, addrs, admin, info := startWithTopic(t, "moves")
	replicas := info.Partitions[0].Replicas
	first, second := replicas[0], replicas[1]
	waitFor(t, fmt.Sprintf("node %d to lead moves/0", first), time.Minute, func() bool {
		info, err := admin.DescribeTopic(ctx, "moves")
		return err == nil && info.Partitions[0].Leader == first
	})
	produced := 0
	produce := func(n int) {
		t.Helper()
		for range n {
			if err := admin.ProduceSync(ctx, &client.Record{Topic: "moves", Value: fmt.Appendf(nil, "v%d", produced)}); err != nil {
				t.Fatal(err)
			}
			produced++
		}
	}
	produce(2)

	// stale learns the leader now and refreshes its metadata only when a
	// broker tells it to.
	stale, err := client.New(ctx, client.Brokers(addrs...), client.MetadataMaxAge(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer stale.Close()
	checkEnd := func(what string) {
		t.Helper()
		offs, err := stale.ListOffsets(ctx, "moves", 0, client.End())
		if err != nil {
			t.Fatalf("%s: ListOffsets: %v", what, err)
		}
		if offs.End != int64(produced) || offs.Offset != int64(produced) {
			t.Fatalf("%s: ListOffsets end %d, offset %d; want %d", what, offs.End, offs.Offset, produced)
		}
	}
	checkEnd("before the move")

	// A consumer and a group member long-poll at the end of the log.
	consumer := testcluster.Client(t, ctx, addrs...)
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	consumed := make(chan int64, 16)
	consumeErr := make(chan error, 1)
	go func() {
		for r, err := range consumer.Consume(cctx, "moves", 0, client.Offset(2)) {
			if err != nil {
				consumeErr <- err
				return
			}
			consumed <- r.Offset
		}
		consumeErr <- nil
	}()
	m := startMember(t, testcluster.Client(t, ctx, addrs...), "readers", []string{"moves"}, client.StartAt(client.Start()))
	waitFor(t, "the group member to read the first records", time.Minute, func() bool { return len(m.values()) == 2 })
	if err := admin.CommitOffsets(ctx, "lag", map[client.TopicPartition]int64{{Topic: "moves", Partition: 0}: 1}); err != nil {
		t.Fatal(err)
	}
	checkLag := func(what string) {
		t.Helper()
		g, err := stale.DescribeGroup(ctx, "lag")
		if err != nil {
			t.Fatalf("%s: DescribeGroup: %v", what, err)
		}
		if len(g.Partitions) != 1 || g.Partitions[0].EndOffset != int64(produced) || g.Partitions[0].Lag != int64(produced-1) {
			t.Fatalf("%s: group partitions %+v; want end offset %d, lag %d", what, g.Partitions, produced, produced-1)
		}
	}
	checkLag("before the move")

	next := int64(2) // the next offset the consumer should yield
	wantConsumed := func(what string) {
		t.Helper()
		for next < int64(produced) {
			select {
			case off := <-consumed:
				if off != next {
					t.Fatalf("%s: consumed offset %d, want %d", what, off, next)
				}
				next++
			case err := <-consumeErr:
				t.Fatalf("%s: consume ended: %v", what, err)
			case <-ctx.Done():
				t.Fatalf("%s: offset %d not consumed", what, next)
			}
		}
	}

	for round, to := range []int32{second, first} {
		what := fmt.Sprintf("after moving the leader to node %d", to)
		moveLeader(t, ctx, admin, "moves", replicas, to)
		produce(2)
		checkEnd(what)
		checkLag(what)
		wantConsumed(what)
		waitFor(t, "the group member to read the new records", time.Minute, func() bool { return len(m.values()) == produced })
		if round == 0 {
			// Every record, read back from the start through the stale client.
			n := 0
			for r, err := range stale.Consume(ctx, "moves", 0, client.Start()) {
				if err != nil {
					t.Fatal(err)
				}
				if want := fmt.Sprintf("v%d", n); string(r.Value) != want || r.Offset != int64(n) {
					t.Fatalf("record %d: %q at %d, want %q", n, r.Value, r.Offset, want)
				}
				if n++; n == produced {
					break
				}
			}
		}
	}
	ccancel()
	if err := <-consumeErr; err != nil {
		t.Fatal(err)
	}
}

// TestDescribeTopicShowsTheLeadersOffsets asks a follower, right after each
// acknowledged write, to describe the topic and takes the offsets from the
// leaders: the end offset is the leader's, not the follower's copy, which
// learns of the commit only with raft's next message.
func TestDescribeTopicShowsTheLeadersOffsets(t *testing.T) {
	ctx, addrs, admin, info := startWithTopic(t, "described")
	var err error
	var leader int32
	waitFor(t, "a leader of described/0", time.Minute, func() bool {
		info, err = admin.DescribeTopic(ctx, "described")
		leader = info.Partitions[0].Leader
		return err == nil && leader != 0
	})
	follower := addrs[0]
	if leader == 1 {
		follower = addrs[1]
	}
	viaFollower := testcluster.Client(t, ctx, follower)
	for i := range 20 {
		if err := admin.ProduceSync(ctx, &client.Record{Topic: "described", Value: fmt.Appendf(nil, "v%d", i)}); err != nil {
			t.Fatal(err)
		}
		got, err := viaFollower.DescribeTopic(ctx, "described")
		if err != nil {
			t.Fatal(err)
		}
		viaFollower.LeaderOffsets(ctx, &got)
		if end := got.Partitions[0].EndOffset; end != int64(i+1) {
			t.Fatalf("after %d acknowledged records, describe through node %s shows end offset %d", i+1, follower, end)
		}
	}
}
