package broker_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/client"
)

// TestGroupCoordinatorFailover runs a consumer group on three in-process
// nodes and stops the node that coordinates it (the controller leader):
// the member joins the new coordinator and keeps its partitions, no
// committed offset is lost or goes back, and every record is read.
func TestGroupCoordinatorFailover(t *testing.T) {
	ctx, brokers, _, c := startClusterClient(t)
	createTopicWhenReady(t, ctx, c, "t", 3, 3)
	produce := func(from, n int) {
		recs := make([]*client.Record, n)
		for i := range recs {
			v := strconv.Itoa(from + i)
			recs[i] = &client.Record{Topic: "t", Key: []byte(v), Value: []byte(v)}
		}
		if err := c.ProduceSync(ctx, recs...); err != nil {
			t.Fatal(err)
		}
	}
	produce(0, 300)

	g, err := c.JoinGroup(ctx, "g", []string{"t"}, client.ManualCommit())
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		seen = map[string]int{}
	)
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}
	commitNow := make(chan chan error)
	rctx, stopReading := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		var err error
		for r, e := range g.Records(rctx) {
			if e != nil {
				err = e
				break
			}
			mu.Lock()
			seen[string(r.Value)]++
			mu.Unlock()
			select {
			case reply := <-commitNow:
				reply <- g.Commit(rctx)
			default:
			}
		}
		done <- err
	}()
	// commit has the member commit after the next record it reads, and
	// produces records for it to read.
	commit := func(from int) {
		t.Helper()
		reply := make(chan error)
		go func() {
			select {
			case commitNow <- reply:
			case <-ctx.Done():
			}
		}()
		produce(from, 30)
		select {
		case err := <-reply:
			if err != nil {
				t.Fatalf("commit: %v", err)
			}
		case <-ctx.Done():
			t.Fatal("the member did not commit")
		}
	}
	waitUntil(t, ctx, "the first 300 records", func() bool { return count() >= 300 })
	commit(300)
	before, err := c.CommittedOffsets(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}

	// Stop the coordinator: the controller leader.
	info, err := c.ClusterInfo(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if info.Controller < 1 {
		t.Fatalf("no controller leader: %+v", info)
	}
	if err := brokers[info.Controller-1].Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped node %d, the coordinator", info.Controller)

	produce(330, 300)
	waitUntil(t, ctx, "all 630 records", func() bool { return count() >= 630 })
	commit(630)
	after, err := c.CommittedOffsets(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for tp, off := range after {
		if off < before[tp] {
			t.Errorf("committed offset of %s went back from %d to %d", tp, before[tp], off)
		}
		total += off
	}
	if total < 631 {
		t.Errorf("committed offsets %v cover %d records, want at least 631", after, total)
	}
	desc, err := c.DescribeGroup(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	if len(desc.Members) != 1 || len(desc.Members[0].Assigned) != 3 {
		t.Errorf("after the failover: %+v, want one member with all three partitions", desc.Members)
	}
	stopReading()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	g.Close(context.Background())
}

func waitUntil(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
