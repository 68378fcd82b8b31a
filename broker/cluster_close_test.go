package broker

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/partition"
)

// TestCloseDoesNotWaitForALeaderReport stops a node while its partition
// replica, which has just become leader, is reporting that to a controller
// that does not answer, as one that lost its majority or that this node
// can no longer follow does not. Close must end the report rather than
// wait for the report's timeout, or a node stopped in such a cluster takes
// that long per replica.
func TestCloseDoesNotWaitForALeaderReport(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	// Reports by the node in stuck wait until their context ends; the
	// others go through. stuck is 0 until the test picks the node.
	var stuck atomic.Int32
	entered := make(chan struct{}, 1)
	real := proposeLeader
	proposeLeader = func(n *clusterNode, ctx context.Context, cmd command) error {
		if n.self.ID != stuck.Load() {
			return real(n, ctx, cmd)
		}
		select {
		case entered <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return ctx.Err()
	}
	old := reportLeaderTimeout
	reportLeaderTimeout = 2 * time.Minute
	t.Cleanup(func() { proposeLeader, reportLeaderTimeout = real, old })

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	brokers, addrs := openBrokers(t, 3, testLogger())
	clientWithTopic(t, ctx, addrs, "r", 1, 3)
	st, _ := brokers[1].cluster.ctrl.fsm.view()
	id := log.ID{Topic: st.Topics["r"].ID, Partition: 0}
	hosted := func(node int32) *hostedReplica {
		cat := brokers[node].cluster.catalog
		cat.mu.Lock()
		defer cat.mu.Unlock()
		r, ok := cat.hosted[id]
		if !ok {
			return nil
		}
		return r.(*hostedReplica)
	}
	leader := func() int32 {
		for n := range brokers {
			if h := hosted(n); h != nil && h.IsLeader() {
				return n
			}
		}
		return 0
	}
	var from int32
	eventually(t, ctx, "a leader of r/0", 30*time.Second, func() (bool, string) {
		from = leader()
		return from != 0, "no replica leads"
	})

	// Leadership moves to another node, whose report then hangs. On a busy
	// machine an election can take the leadership from it before it
	// reports, and then it has nothing to report: move it there again.
	to := from%3 + 1
	stuck.Store(to)
	for reporting := false; !reporting; {
		eventually(t, ctx, fmt.Sprintf("node %d to lead r/0", to), 30*time.Second, func() (bool, string) {
			if h := hosted(to); h != nil && h.IsLeader() {
				return true, ""
			}
			for n := range brokers {
				if h := hosted(n); n != to && h != nil && h.IsLeader() {
					if err := h.TransferLeadershipTo(partition.Server{ID: strconv.Itoa(int(to)), Addr: st.Nodes[to].Addr}); err != nil {
						return false, err.Error()
					}
				}
			}
			return false, "leadership not moved yet"
		})
		select {
		case <-entered:
			reporting = true
		case <-time.After(5 * time.Second):
		case <-ctx.Done():
			t.Fatalf("node %d did not report its leadership of r/0", to)
		}
	}

	closed := make(chan error, 1)
	go func() { closed <- brokers[to].Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("node %d's Close still waits after 30 s: it waits for the leadership report, whose timeout is %s", to, reportLeaderTimeout)
	}
}
