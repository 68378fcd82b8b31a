package broker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/client"
)

type queueRec struct {
	p   int32
	off int64
}

// TestQueueCluster runs a queue group on a three-node cluster: five
// consumers share three partitions and every record is delivered once and
// acked once; then the leader of a partition stops while a consumer holds
// leases: records acked before stay acked, leases taken before are settled
// through the new leader, and records leased and released come back.
func TestQueueCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	brokers, addrs := startCluster(t, 3)
	c, err := client.New(ctx, client.Brokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
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
