package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/log"
)

// TestTransferToPreferredFollowsTheState runs three nodes on real sockets
// and stops the preferred replica of a partition, so that the new leader
// waits for it to come back before handing leadership over. Meanwhile a
// reassignment makes the new leader itself the preferred replica: once the
// old preferred replica is back and caught up, the transfer must not hand
// it leadership.
func TestTransferToPreferredFollowsTheState(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	brokers, addrs, open := openBrokersReopenable(t, 3, testLogger())
	c, info := clientWithTopic(t, ctx, addrs, "p", 1, 3)
	for i := range 20 {
		if err := c.ProduceSync(ctx, &client.Record{Topic: "p", Value: fmt.Appendf(nil, "before-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	replicas := info.Partitions[0].Replicas
	old := replicas[0]
	eventually(t, ctx, fmt.Sprintf("node %d, the preferred replica, to lead", old), 30*time.Second, func() (bool, string) {
		info, err := c.DescribeTopic(ctx, "p")
		return err == nil && info.Partitions[0].Leader == old, fmt.Sprint(info.Partitions, err)
	})

	// The preferred replica stops; another takes over and waits for it.
	if err := brokers[old].Close(); err != nil {
		t.Fatal(err)
	}
	id := log.ID{Topic: mustTopic(t, brokers[replicas[1]], "p").ID, Partition: 0}
	var (
		leader int32
		h      *hostedReplica
	)
	eventually(t, ctx, "another node to lead", 30*time.Second, func() (bool, string) {
		for _, n := range replicas[1:] {
			cat := brokers[n].cluster.catalog
			cat.mu.Lock()
			r, ok := cat.hosted[id]
			cat.mu.Unlock()
			if ok && r.(*hostedReplica).IsLeader() {
				leader, h = n, r.(*hostedReplica)
				return true, ""
			}
		}
		return false, "no leader"
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		brokers[leader].cluster.catalog.transferToPreferred(h, id, old)
	}()

	// The leader becomes the preferred replica, without a move.
	rest := []int32{leader}
	for _, r := range replicas {
		if r != leader {
			rest = append(rest, r)
		}
	}
	var live []string
	for _, r := range replicas[1:] {
		live = append(live, addrs[r-1])
	}
	c2, err := client.New(ctx, client.Brokers(live...))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	eventually(t, ctx, fmt.Sprintf("the reassignment to %v", rest), 30*time.Second, func() (bool, string) {
		_, _, err := c2.ReassignPartition(ctx, "p", 0, rest)
		return err == nil, fmt.Sprint(err)
	})
	eventually(t, ctx, fmt.Sprintf("node %d to see itself preferred", leader), 30*time.Second, func() (bool, string) {
		pm := mustTopic(t, brokers[leader], "p").Partitions[0]
		return pm.Replicas[0] == leader && !pm.moving(), fmt.Sprint(pm)
	})

	// The old preferred replica comes back and catches up.
	open(old)
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("the transfer to node %d still waits 60s after node %d became preferred and node %d came back", old, leader, old)
	}
	if !h.IsLeader() {
		now, _ := h.Leader()
		t.Fatalf("node %d handed leadership away (to %q) after it became the preferred replica", leader, now.ID)
	}
}
