package broker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/proto/runnelpb"
)

type queueRec struct {
	p   int32
	off int64
}

// TestQueueCluster runs queue groups on a three-node cluster: five
// consumers share three partitions and every record is delivered once and
// acked once; with key ordering no two records of a key are in flight at
// once; an unsettled lease expires into attempt 2 and a nack's delay holds
// the record back; then the leader of a partition stops while a consumer
// holds leases: records acked before stay acked, leases taken before are
// settled through the new leader, and records leased and released come
// back.
func TestQueueCluster(t *testing.T) {
	ctx, brokers, _, c := startClusterClient(t)
	createTopicWhenReady(t, ctx, c, "jobs", 3, 3)
	produce := func(topic string, n int) {
		recs := make([]*client.Record, n)
		for i := range recs {
			recs[i] = &client.Record{Topic: topic, Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprint(i))}
		}
		if err := c.ProduceSync(ctx, recs...); err != nil {
			t.Fatal(err)
		}
	}
	const n = 300
	produce("jobs", n)

	var (
		mu   sync.Mutex
		seen = map[queueRec]int{}
		per  = make([]int, 5)
	)
	done := make(chan struct{})
	cctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range per {
		q, err := c.Queue("workers", "jobs", client.QueueOptions{Prefetch: 16})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer q.Close()
			for {
				d, err := q.Next(cctx)
				if err != nil {
					return
				}
				if err := q.Ack(ctx, d); err != nil {
					t.Errorf("ack %d/%d: %v", d.Partition, d.Offset, err)
				}
				mu.Lock()
				seen[queueRec{d.Partition, d.Offset}]++
				per[i]++
				if len(seen) == n {
					select {
					case <-done:
					default:
						close(done)
					}
				}
				mu.Unlock()
			}
		}()
	}
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatalf("only %d of %d records acked", len(seen), n)
	}
	stop()
	wg.Wait()
	for k, v := range seen {
		if v != 1 {
			t.Errorf("%v delivered %d times", k, v)
		}
	}
	for i, v := range per {
		if v == 0 {
			t.Errorf("consumer %d got no work: %v", i, per)
		}
	}

	// Key ordering across consumers: no two records of a key in flight at
	// once, each key's records in offset order.
	createTopicWhenReady(t, ctx, c, "k", 2, 3)
	recs := make([]*client.Record, 200)
	for i := range recs {
		recs[i] = &client.Record{Topic: "k", Key: []byte(fmt.Sprint("key", i%7)), Value: []byte(fmt.Sprint(i))}
	}
	if err := c.ProduceSync(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	var (
		acking = map[int64]bool{} // offsets whose ack has been sent
		last   = map[string]int64{}
		count  int
	)
	kdone := make(chan struct{})
	kctx, kstop := context.WithCancel(ctx)
	for range 3 {
		q, err := c.Queue("ordered", "k", client.QueueOptions{KeyOrdering: true, Prefetch: 8})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer q.Close()
			for {
				d, err := q.Next(kctx)
				if err != nil {
					return
				}
				// A key's records all go to one partition: its previous
				// record must be acked (the ack sent) before this one
				// comes, and come before it.
				k := string(d.Key)
				mu.Lock()
				if l, ok := last[k]; ok && (l >= d.Offset || !acking[l]) {
					t.Errorf("%d/%d: key %s after offset %d (ack sent: %t)", d.Partition, d.Offset, k, l, acking[l])
				}
				last[k] = d.Offset
				mu.Unlock()
				time.Sleep(time.Millisecond) // the handler's work
				mu.Lock()
				acking[d.Offset] = true
				mu.Unlock()
				if err := q.Ack(ctx, d); err != nil {
					t.Error(err)
				}
				mu.Lock()
				if count++; count == len(recs) {
					close(kdone)
				}
				mu.Unlock()
			}
		}()
	}
	select {
	case <-kdone:
	case <-ctx.Done():
		t.Fatalf("key ordering: %d of %d acked", count, len(recs))
	}
	kstop()
	wg.Wait()

	// Lease expiry and a nack's delay: the record comes back with the
	// next attempt, not before.
	createTopicWhenReady(t, ctx, c, "x", 1, 3)
	produce("x", 1)
	xq, err := c.Queue("g", "x", client.QueueOptions{Visibility: 300 * time.Millisecond, Prefetch: 1})
	if err != nil {
		t.Fatal(err)
	}
	d1, err := xq.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := xq.Next(ctx) // not settled: back after the lease
	if err != nil {
		t.Fatal(err)
	}
	if d2.Offset != d1.Offset || d1.Attempt != 1 || d2.Attempt != 2 || !time.Now().After(d1.LeaseUntil) {
		t.Fatalf("expiry: first attempt %d, then offset %d attempt %d", d1.Attempt, d2.Offset, d2.Attempt)
	}
	nacked := time.Now()
	if err := xq.Nack(ctx, d2, 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	d3, err := xq.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d3.Attempt != 3 || time.Since(nacked) < 500*time.Millisecond {
		t.Fatalf("nack: attempt %d %s after a 500ms nack", d3.Attempt, time.Since(nacked))
	}
	if err := xq.Ack(ctx, d3); err != nil && !errors.Is(err, client.ErrLeaseLost) {
		t.Fatal(err)
	}
	xq.Close()

	// Failover.
	info := createTopicWhenReady(t, ctx, c, "f", 1, 3)
	produce("f", 100)
	a, err := c.Queue("g", "f", client.QueueOptions{Prefetch: 20, Visibility: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var held []*client.Delivery
	for len(held) < 20 {
		d, err := a.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, d)
	}
	acked := map[int64]bool{}
	for _, d := range held[:10] {
		if err := a.Ack(ctx, d); err != nil {
			t.Fatal(err)
		}
		acked[d.Offset] = true
	}
	leader := info.Partitions[0].Leader
	if err := brokers[leader-1].Close(); err != nil {
		t.Fatal(err)
	}
	// The leases live on: settled through the new leader.
	for _, d := range held[10:15] {
		if err := a.Ack(ctx, d); err != nil {
			t.Fatalf("ack of %d after the leader stopped: %v", d.Offset, err)
		}
		acked[d.Offset] = true
	}
	// The other five are released when a closes, as are its prefetched ones.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := c.Queue("g", "f", client.QueueOptions{Prefetch: 40, Visibility: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := map[int64]int{}
	for len(got) < 100-len(acked) {
		d, err := b.Next(ctx)
		if err != nil {
			t.Fatalf("%d of %d records after failover: %v", len(got), 100-len(acked), err)
		}
		if acked[d.Offset] {
			t.Fatalf("acked record %d delivered again (attempt %d)", d.Offset, d.Attempt)
		}
		got[d.Offset] = d.Attempt
		if err := b.Ack(ctx, d); err != nil && !errors.Is(err, client.ErrLeaseLost) {
			t.Fatal(err)
		}
	}
	for _, d := range held[15:] {
		if got[d.Offset] < 2 {
			t.Errorf("released record %d came back with attempt %d, want 2 or more", d.Offset, got[d.Offset])
		}
	}
}

// TestQueueFollowerNotLeader sends queue calls and a produce to the nodes
// that follow a partition: each answers NOT_LEADER naming the leader, not
// an answer from its own copy of the log or queue state — a seek past the
// follower's end is not OFFSET_OUT_OF_RANGE, and a produce to a topic whose
// backlog bound the leader enforces is not TOPIC_BACKLOG_FULL, whose retry
// would keep the client on the follower.
func TestQueueFollowerNotLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, addrs := startCluster(t, 3)
	c, err := client.New(ctx, client.Brokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	createTopicWhenReady(t, ctx, c, "held", 1, 3)
	if _, err := c.AlterTopicConfigs(ctx, "held", map[string]string{broker.ConfigMaxBacklogRecords: "2"}, nil); err != nil {
		t.Fatal(err)
	}
	recs := make([]*client.Record, 3)
	for i := range recs {
		recs[i] = &client.Record{Topic: "held", Value: []byte(fmt.Sprint(i))}
	}
	if err := c.ProduceSync(ctx, recs...); err != nil {
		t.Fatal(err)
	}

	queues := make([]runnelpb.QueuesClient, len(addrs))
	brokers := make([]runnelpb.BrokerClient, len(addrs))
	for i, conn := range dialNodes(t, addrs) {
		queues[i], brokers[i] = runnelpb.NewQueuesClient(conn), runnelpb.NewBrokerClient(conn)
	}
	// The leader is the node that leases; the lease makes the group whose
	// backlog of three records is over the bound of two.
	lease := &runnelpb.LeaseRequest{Topic: "held", Partition: 0, Group: "g", Max: 1, VisibilityMs: 60_000}
	leader := -1
	for leader < 0 {
		for i, q := range queues {
			if _, err := q.Lease(ctx, lease); err == nil {
				leader = i
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatal("no node leases from held/0")
		}
	}
	// The bound reaches the leader's node shortly after the alter.
	produce := &runnelpb.ProduceRequest{Topic: "held", Partition: 0, Batch: batchOf("x")}
	for {
		_, err = brokers[leader].Produce(ctx, produce)
		if err != nil || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	wantCode(t, err, codes.ResourceExhausted, "TOPIC_BACKLOG_FULL")

	// notLeader retries while the follower has no leader or replica yet,
	// and checks the answer names the leader.
	notLeader := func(name string, i int, call func() error) {
		t.Helper()
		for {
			err := call()
			if st, ok := status.FromError(err); ok && (st.Code() == codes.Unavailable || st.Code() == codes.NotFound) && ctx.Err() == nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			info := wantCode(t, err, codes.FailedPrecondition, "NOT_LEADER")
			if want := fmt.Sprint(leader + 1); info.Metadata["leader_id"] != want {
				t.Fatalf("%s on node %d: leader_id %q, want %s", name, i+1, info.Metadata["leader_id"], want)
			}
			return
		}
	}
	for i := range addrs {
		if i == leader {
			continue
		}
		notLeader("produce", i, func() error {
			_, err := brokers[i].Produce(ctx, produce)
			return err
		})
		notLeader("seek", i, func() error {
			_, err := queues[i].SeekQueue(ctx, &runnelpb.SeekQueueRequest{Topic: "held", Partition: 0, Group: "g",
				To: &runnelpb.Position{At: &runnelpb.Position_Offset{Offset: 1000}}})
			return err
		})
		notLeader("lease", i, func() error {
			_, err := queues[i].Lease(ctx, lease)
			return err
		})
		notLeader("describe", i, func() error {
			_, err := queues[i].DescribeQueue(ctx, &runnelpb.DescribeQueueRequest{Topic: "held", Partition: 0, Group: "g"})
			return err
		})
	}
}
