package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/partition"
	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// A partition's replicas change in the cluster state first (a
// reassignment, or a node being removed); its raft group follows. The
// group's leader runs partition.Replica.Reconfigure towards the assigned
// replicas and reports the group to the controller before a server joins
// and after every change. Every node in the assigned replicas or in the
// reported group runs a replica, so a replica that leaves keeps running
// until the report that it is out of the group, and is then dropped.

// reconfWorker is a goroutine moving one partition's raft group.
type reconfWorker struct {
	// want is the assignment it works towards.
	want   string
	cancel context.CancelFunc
	done   chan struct{}
}

// stopReconf stops the replica's reconfiguration, if one runs, and waits
// for it.
func (h *hostedReplica) stopReconf() {
	if w := h.reconf; w != nil {
		w.cancel()
		<-w.done
		h.reconf = nil
	}
}

// steer starts or stops the reconfiguration of a hosted replica's group: it
// starts while the replica leads and the group may differ from the assigned
// replicas, and starts afresh when the assignment changes. When the
// preferred leader changes without a move, the leader hands over to it.
func (c *clusterCatalog) steer(st *clusterState, t clusterTopic, id log.ID, h *hostedReplica) {
	pm := t.Partitions[id.Partition]
	lead := h.IsLeader()
	want := fmt.Sprint(pm.Replicas)
	if w := h.reconf; w != nil {
		select {
		case <-w.done:
			h.reconf = nil
		default:
			// One working towards this assignment ends by itself: once
			// its last report settles the move it hands leadership to the
			// preferred replica, and when it stops leading it returns.
			if w.want == want {
				return
			}
			h.stopReconf()
		}
	}
	preferredChanged := h.preferred != pm.Replicas[0]
	h.preferred = pm.Replicas[0]
	if !lead {
		return
	}
	if !pm.moving() {
		if preferredChanged && h.preferred != c.n.self.ID {
			go c.transferToPreferred(h, id, h.preferred)
		}
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &reconfWorker{want: want, cancel: cancel, done: make(chan struct{})}
	h.reconf = w
	go func() {
		defer close(w.done)
		c.reconfigure(ctx, t, id, h)
	}()
}

// reconfigure moves partition id's raft group to its assigned replicas,
// retrying after errors, until the group is there, this replica no longer
// leads, or ctx ends.
func (c *clusterCatalog) reconfigure(ctx context.Context, t clusterTopic, id log.ID, h *hostedReplica) {
	backoff := 200 * time.Millisecond
	for {
		st, _ := c.n.ctrl.fsm.view()
		ct, ok := st.Topics[t.Name]
		if !ok || ct.ID != t.ID {
			return
		}
		pm := ct.Partitions[id.Partition]
		if !pm.moving() {
			return
		}
		want, err := servers(st, pm.Replicas)
		if err != nil {
			c.n.b.logger.Error("move partition replicas", "group", h.group, "err", err)
			return
		}
		c.n.b.logger.Info("moving partition replicas", "topic", t.Name, "partition", id.Partition, "from", pm.Members, "to", pm.Replicas)
		err = h.Reconfigure(ctx, partition.Reconfig{
			Want:    want,
			Applied: c.replicaApplied(id),
			Report:  c.reportMembers(t, id),
		})
		switch {
		case err == nil:
			c.n.b.logger.Info("partition replicas moved", "topic", t.Name, "partition", id.Partition, "replicas", pm.Replicas)
			if pm.Replicas[0] != c.n.self.ID {
				go c.transferToPreferred(h, id, pm.Replicas[0])
			}
			return
		case errors.Is(err, partition.ErrNotLeader), ctx.Err() != nil:
			return
		}
		c.n.b.logger.Warn("move partition replicas; retrying", "group", h.group, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-c.n.b.closing:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// servers returns nodes as members of a partition's raft group: the raft
// transport shares each node's gRPC address.
func servers(st *clusterState, nodes []int32) ([]partition.Server, error) {
	out := make([]partition.Server, 0, len(nodes))
	for _, id := range nodes {
		n, ok := st.Nodes[id]
		if !ok {
			return nil, fmt.Errorf("replica node %d is not in the cluster", id)
		}
		out = append(out, partition.Server{ID: strconv.Itoa(int(id)), Addr: n.Addr})
	}
	return out, nil
}

// replicaApplied asks the node of server s how far its replica of
// partition id has applied the raft log.
func (c *clusterCatalog) replicaApplied(id log.ID) func(context.Context, partition.Server) (uint64, error) {
	return func(ctx context.Context, s partition.Server) (uint64, error) {
		resp, err := c.replicaStatus(ctx, s, id, false)
		if err != nil {
			return 0, err
		}
		return resp.AppliedIndex, nil
	}
}

// replicaLogEnd asks the node of server s to make its replica of
// partition id durable and say where its log ends (partition.ReplicaConfig's
// PeerLogEnd).
func (c *clusterCatalog) replicaLogEnd(id log.ID) func(context.Context, partition.Server) (int64, error) {
	return func(ctx context.Context, s partition.Server) (int64, error) {
		resp, err := c.replicaStatus(ctx, s, id, true)
		if err != nil {
			return 0, err
		}
		if resp.LogEnd == nil {
			return 0, fmt.Errorf("node %s runs an older version: %w", s.ID, partition.ErrNoLogEnd)
		}
		return resp.GetLogEnd(), nil
	}
}

// replicaStatus asks the node of server s, this one included, about its
// replica of partition id, as the ReplicaStatus RPC does.
func (c *clusterCatalog) replicaStatus(ctx context.Context, s partition.Server, id log.ID, syncLog bool) (*runnelpb.ReplicaStatusResponse, error) {
	if s.ID == strconv.Itoa(int(c.n.self.ID)) {
		return c.statusHere(id, syncLog)
	}
	conn, err := c.n.peer(s.Addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return runnelpb.NewBrokerClient(conn).ReplicaStatus(ctx, &runnelpb.ReplicaStatusRequest{TopicId: id.Topic, Partition: int32(id.Partition), SyncLog: syncLog})
}

// statusHere reports how far this node's replica of partition id has
// applied its raft log and, with syncLog, makes its log durable and says
// where it ends.
func (c *clusterCatalog) statusHere(id log.ID, syncLog bool) (*runnelpb.ReplicaStatusResponse, error) {
	c.mu.Lock()
	r, ok := c.hosted[id]
	c.mu.Unlock()
	if !ok {
		return nil, errorf(ErrCatchingUp, "node %d runs no replica of partition %d of topic id %d yet", c.n.self.ID, id.Partition, id.Topic)
	}
	h := r.(*hostedReplica)
	resp := &runnelpb.ReplicaStatusResponse{AppliedIndex: h.Stats().AppliedIndex}
	if syncLog {
		l := h.Log()
		// End first: what Sync makes durable covers it.
		end := l.End()
		if err := l.Sync(); err != nil {
			return nil, err
		}
		resp.LogEnd = &end
	}
	return resp, nil
}

// reportMembers tells the controller about partition id's raft group.
func (c *clusterCatalog) reportMembers(t clusterTopic, id log.ID) func(context.Context, partition.Membership) error {
	return func(ctx context.Context, m partition.Membership) error {
		var ids, nonvoters []int32
		for _, s := range m.Members {
			n, err := strconv.Atoi(s.ID)
			if err != nil {
				return fmt.Errorf("partition %s/%d has a raft member %q that is not a node id", t.Name, id.Partition, s.ID)
			}
			ids = append(ids, int32(n))
			if !s.Voter {
				nonvoters = append(nonvoters, int32(n))
			}
		}
		slices.Sort(ids)
		slices.Sort(nonvoters)
		return c.n.propose(ctx, command{PartitionMembers: &membersCmd{
			Topic: t.Name, TopicID: t.ID, Partition: int(id.Partition), Members: ids, Nonvoters: nonvoters, Term: m.Term, Index: m.Index,
		}})
	}
}
