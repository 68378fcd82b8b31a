package broker

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/log"
)

// logWatch is a slog handler that keeps the messages logged at Info and
// above, with their "node" attribute, and passes them on to next.
type logWatch struct {
	next slog.Handler
	mu   *sync.Mutex
	seen *[]loggedMessage
}

type loggedMessage struct {
	msg  string
	node int64
}

func newLogWatch(next slog.Handler) *logWatch {
	return &logWatch{next: next, mu: new(sync.Mutex), seen: new([]loggedMessage)}
}

func (w *logWatch) Enabled(ctx context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (w *logWatch) Handle(ctx context.Context, r slog.Record) error {
	m := loggedMessage{msg: r.Message, node: -1}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "node" {
			m.node = a.Value.Int64()
		}
		return true
	})
	w.mu.Lock()
	*w.seen = append(*w.seen, m)
	w.mu.Unlock()
	if w.next.Enabled(ctx, r.Level) {
		return w.next.Handle(ctx, r)
	}
	return nil
}

func (w *logWatch) WithAttrs(as []slog.Attr) slog.Handler {
	return &logWatch{next: w.next.WithAttrs(as), mu: w.mu, seen: w.seen}
}

func (w *logWatch) WithGroup(name string) slog.Handler {
	return &logWatch{next: w.next.WithGroup(name), mu: w.mu, seen: w.seen}
}

// logged reports whether msg was logged with node id.
func (w *logWatch) logged(msg string, id int32) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Contains(*w.seen, loggedMessage{msg: msg, node: int64(id)})
}

// TestRemovalWaitsForTheNodeToStopItsReplicas removes a node whose drop
// of its last replica is held up: the controller leader must keep it in
// the controller group, whose entries tell it what to stop, until it has
// stopped the replica, and only then take it out.
func TestRemovalWaitsForTheNodeToStopItsReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The node being removed holds up its drops until release.
	var removing atomic.Int32
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	real := dropReplica
	dropReplica = func(cc *clusterCatalog, id log.ID, h *hostedReplica) error {
		if cc.n.self.ID == removing.Load() {
			once.Do(func() { close(entered) })
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return real(cc, id, h)
	}
	t.Cleanup(func() { dropReplica = real })
	releaseOnce := sync.OnceFunc(func() { close(release) })
	defer releaseOnce()
	watch := newLogWatch(testLogger().Handler())
	brokers, addrs := openBrokers(t, 3, slog.New(watch))
	c, _ := clientWithTopic(t, ctx, addrs, "w", 1, 2)
	if err := c.ProduceSync(ctx, &client.Record{Topic: "w", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}

	// Remove a replica of w/0 that does not lead the controller, so that
	// the leader stays put while it waits.
	var leader int32
	eventually(t, ctx, "a controller leader", 30*time.Second, func() (bool, string) {
		leader, _ = brokers[1].cluster.ctrl.leader()
		return leader != 0, "none yet"
	})
	removed := int32(0)
	for _, id := range mustTopic(t, brokers[leader], "w").Partitions[0].Replicas {
		if id != leader {
			removed = id
		}
	}
	removing.Store(removed)

	eventually(t, ctx, "the removal to start", 30*time.Second, func() (bool, string) {
		_, err := c.DecommissionNode(ctx, removed)
		return err == nil, fmt.Sprint(err)
	})
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatalf("node %d never began to drop its replica of w/0", removed)
	}
	inGroup := func() bool {
		f := brokers[leader].cluster.ctrl.raft.GetConfiguration()
		if err := f.Error(); err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(f.Configuration().Servers, func(s raft.Server) bool { return s.ID == nodeIDString(removed) })
	}
	const waitMsg = "waiting for the removed node to stop its replicas before it leaves the controller group"
	eventually(t, ctx, "the controller leader to wait for the removed node", 30*time.Second, func() (bool, string) {
		if !inGroup() {
			t.Fatalf("node %d left the controller group while it was still dropping its replica of w/0", removed)
		}
		return watch.logged(waitMsg, removed), "not logged"
	})
	if !inGroup() {
		t.Fatalf("node %d left the controller group while it was still dropping its replica of w/0", removed)
	}

	releaseOnce()
	eventually(t, ctx, "the removed node to leave", 30*time.Second, func() (bool, string) {
		p, err := c.ClusterPlacement(ctx, addrs[leader-1])
		_, listed := p.FindNode(removed)
		return err == nil && !listed && !inGroup(), fmt.Sprintf("listed %v, in the controller group %v, %v", listed, inGroup(), err)
	})
	cat := brokers[removed].cluster.catalog
	cat.mu.Lock()
	left, dropping := len(cat.hosted), len(cat.dropping)
	cat.mu.Unlock()
	if left != 0 || dropping != 0 {
		t.Fatalf("node %d left the cluster with %d replicas running and %d being dropped", removed, left, dropping)
	}
}

// TestRemovedNodeSaysSoAfterRestart removes a node while it is down and
// starts it again on its data: it never hears from the controller again,
// and must say that it was removed rather than that it is catching up.
func TestRemovedNodeSaysSoAfterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a four-node cluster")
	}
	old := removalCheckInterval
	removalCheckInterval = 100 * time.Millisecond
	t.Cleanup(func() { removalCheckInterval = old })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	brokers, addrs, reopen := openBrokersReopenable(t, 4, testLogger())
	c, _ := clientWithTopic(t, ctx, addrs[1:], "g", 2, 3)
	if err := c.ProduceSync(ctx, &client.Record{Topic: "g", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "node 1 to catch up", 30*time.Second, func() (bool, string) {
		err := brokers[1].cluster.ready()
		return err == nil, fmt.Sprint(err)
	})
	removeStopped(t, ctx, c, brokers[1], 1)

	reopen(1)
	eventually(t, ctx, "node 1 to say it was removed", 30*time.Second, func() (bool, string) {
		err := brokers[1].cluster.ready()
		return err != nil && strings.Contains(err.Error(), "node 1 was removed from the cluster"), fmt.Sprint(err)
	})
	for _, id := range []int32{2, 3, 4} {
		if err := brokers[id].cluster.ready(); err != nil {
			t.Fatalf("node %d: %v", id, err)
		}
		// Its registration on start was refused.
		p, err := c.ClusterPlacement(ctx, addrs[id-1])
		if n, listed := p.FindNode(1); err != nil || listed {
			t.Fatalf("node %d lists the removed node 1 again: %+v (%v)", id, n, err)
		}
	}
}
