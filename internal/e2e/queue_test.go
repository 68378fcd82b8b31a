package e2e

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/client"
)

// TestQueueKillLeader kills -9 the leader of a partition while a queue
// group of three consumers works through it: every record is acked, none
// is lost, and a record acked before the kill is never delivered again.
func TestQueueKillLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-node cluster of real processes")
	}
	bin := buildRunnel(t)
	d := startDev(t, bin)
	mustRun(t, bin, d.brokers, nil, "topic", "create", "jobs", "-p", "3")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := client.New(ctx, client.Brokers(d.brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 3000
	recs := make([]*client.Record, n)
	for i := range recs {
		recs[i] = &client.Record{Topic: "jobs", Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprint(i))}
	}
	if err := c.ProduceSync(ctx, recs...); err != nil {
		t.Fatal(err)
	}

	type key struct {
		p   int32
		off int64
	}
	var (
		mu     sync.Mutex
		acked  = map[key]bool{}
		redone int // acked records delivered again
	)
	all := make(chan struct{})
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 3 {
		q, err := c.Queue("workers", "jobs", client.QueueOptions{Visibility: 5 * time.Second, Prefetch: 16})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer q.Close()
			for {
				d, err := q.Next(wctx)
				if err != nil {
					return
				}
				k := key{d.Partition, d.Offset}
				mu.Lock()
				if acked[k] {
					redone++
				}
				mu.Unlock()
				time.Sleep(time.Millisecond) // the job
				err = q.Ack(wctx, d)
				if errors.Is(err, client.ErrLeaseLost) {
					continue // it comes back
				}
				if err != nil {
					if wctx.Err() == nil {
						t.Errorf("ack %d/%d: %v", d.Partition, d.Offset, err)
					}
					return
				}
				mu.Lock()
				if !acked[k] {
					// Only the first ack counts: a record acked again
					// after a redelivery is counted in redone.
					acked[k] = true
					if len(acked) == n {
						close(all)
					}
				}
				mu.Unlock()
			}
		}()
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	for count() < n/3 {
		select {
		case <-ctx.Done():
			t.Fatalf("%d of %d acked before the kill", count(), n)
		case <-time.After(20 * time.Millisecond): // polling the workers' progress
		}
	}
	leader := d.raftLeader(t, "jobs/0")
	d.signal(leader, syscall.SIGKILL)
	t.Logf("killed node %d, the leader of jobs/0, after %d acks", leader, count())
	select {
	case <-all:
	case <-ctx.Done():
		t.Fatalf("%d of %d acked after the kill", count(), n)
	}
	stop()
	wg.Wait()
	if redone > 0 {
		t.Errorf("%d acked records delivered again", redone)
	}
}
