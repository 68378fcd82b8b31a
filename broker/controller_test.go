package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// inmemControllers starts n controller members over raft's in-memory
// transport, fully connected, with on-disk stores in temporary folders.
func inmemControllers(t *testing.T, n int) ([]*controller, []*raft.InmemTransport, []string, []*raft.InmemStore) {
	t.Helper()
	peers := map[int32]string{}
	trans := make([]*raft.InmemTransport, n)
	for i := range n {
		addr, tr := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("node%d", i+1)))
		trans[i] = tr
		peers[int32(i+1)] = string(addr)
	}
	for i := range n {
		for j := range n {
			if i != j {
				trans[i].Connect(trans[j].LocalAddr(), trans[j])
			}
		}
	}
	dirs := make([]string, n)
	cs := make([]*controller, n)
	stores := make([]*raft.InmemStore, n)
	for i := range n {
		dirs[i] = t.TempDir()
		stores[i] = raft.NewInmemStore()
		c, err := openController(dirs[i], int32(i+1), trans[i], peers, nil, stores[i], hclog.NewNullLogger(), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		cs[i] = c
	}
	t.Cleanup(func() {
		for _, c := range cs {
			if c != nil {
				c.close()
			}
		}
	})
	return cs, trans, dirs, stores
}

// waitLeader waits for one of cs to lead and returns it.
func waitLeader(t *testing.T, cs []*controller) *controller {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, c := range cs {
			if c != nil && c.raft.State() == raft.Leader {
				return c
			}
		}
		select {
		case <-cs[0].raft.LeaderCh():
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatal("no controller leader within 20s")
	return nil
}

func TestControllerReplicatesState(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, trans, dirs, stores := inmemControllers(t, 3)
	leader := waitLeader(t, cs)
	for id := int32(1); id <= 3; id++ {
		if _, err := leader.applyLocal(ctx, command{AddNode: &nodeMeta{ID: id, Addr: fmt.Sprintf("node%d", id)}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := leader.applyLocal(ctx, command{CreateTopic: &createTopicCmd{Name: "t", Partitions: 6, Replicas: 3}}); err != nil {
		t.Fatal(err)
	}
	// A refused command comes back as its own error.
	_, err := leader.applyLocal(ctx, command{CreateTopic: &createTopicCmd{Name: "t", Partitions: 1, Replicas: 1}})
	if !errors.Is(err, ErrTopicExists) {
		t.Fatalf("second create: %v, want ErrTopicExists", err)
	}
	index := leader.raft.AppliedIndex()
	for i, c := range cs {
		if err := c.waitApplied(ctx, index); err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
		st, _ := c.fsm.view()
		if len(st.Topics["t"].Partitions) != 6 || len(st.Nodes) != 3 {
			t.Fatalf("node %d state: %+v", i+1, st)
		}
	}

	// Restart a follower on its stores (the in-memory store stands for the
	// node's disk): it comes back with the state.
	var f int
	for i, c := range cs {
		if c != leader {
			f = i
			break
		}
	}
	cs[f].close()
	peers := map[int32]string{}
	for i := range cs {
		peers[int32(i+1)] = string(trans[i].LocalAddr())
	}
	c, err := openController(dirs[f], int32(f+1), trans[f], peers, nil, stores[f], hclog.NewNullLogger(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	cs[f] = c
	if err := c.waitApplied(ctx, index); err != nil {
		t.Fatalf("restarted node: %v", err)
	}
	if st, _ := c.fsm.view(); st.Topics["t"].ID != 1 {
		t.Fatalf("restarted node lost the topic: %+v", st)
	}
}
