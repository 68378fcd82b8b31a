package broker

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Consumer groups in a cluster. The controller leader coordinates every
// group; the committed offsets are part of the controller state, so every
// node has them and a new controller leader coordinates from where the
// last one stopped. Membership is not replicated: when the leadership
// moves, the old coordinator ends its sessions with NOT_COORDINATOR, the
// members join the new one with the partitions they hold, and the new one
// holds unclaimed partitions back for a session timeout so that they keep
// them (consumergroup.Group.Recover).

// clusterGroups runs the coordinator while this node leads the controller.
type clusterGroups struct {
	n *clusterNode

	mu    sync.Mutex
	coord *coordinator // nil while this node does not lead
}

// commitOffsetsCmd is a batch of committed-offset changes, applied to the
// controller state in order.
type commitOffsetsCmd struct {
	Ops []offsetOp `json:"ops"`
}

// applyCommitOffsets applies a batch of offset changes to the state.
func (s *clusterState) applyCommitOffsets(c *commitOffsetsCmd) error {
	if s.Offsets == nil {
		s.Offsets = map[string]map[string]int64{}
	}
	for _, op := range c.Ops {
		applyOp(s.Offsets, op)
	}
	return nil
}

// coordinator returns the group coordinator of a cluster node: its own
// while it leads the controller, else an error naming the leader.
func (n *clusterNode) coordinator() (*coordinator, error) {
	g := n.groups
	g.mu.Lock()
	c := g.coord
	g.mu.Unlock()
	if c != nil && n.ctrl.raft.State() == raft.Leader {
		return c, nil
	}
	id, addr := n.ctrl.leader()
	if id == n.self.ID {
		// Leader, but the coordinator is not started yet (or just
		// stopped): the caller retries shortly.
		id, addr = 0, ""
	}
	return nil, &NotCoordinatorError{LeaderID: id, LeaderAddr: addr}
}

// offsetsView returns the committed offsets as this node's copy of the
// controller state has them.
func (n *clusterNode) offsetsView() offsetStore { return &clusterOffsets{n: n} }

// watchGroups starts a coordinator whenever this node becomes the
// controller leader and stops it when it no longer is.
func (g *clusterGroups) watchGroups() {
	n := g.n
	obs := make(chan raft.Observation, 16)
	observer := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		if !ok {
			_, ok = o.Data.(raft.RaftState)
		}
		return ok
	})
	n.ctrl.raft.RegisterObserver(observer)
	defer n.ctrl.raft.DeregisterObserver(observer)
	var stop chan struct{}
	for {
		leading := n.ctrl.raft.State() == raft.Leader
		g.mu.Lock()
		switch {
		case leading && g.coord == nil:
			store := &clusterOffsets{n: n}
			g.coord = newCoordinator(store, n.b.partitionCount, n.b.logger)
			stop = make(chan struct{})
			go g.coord.run(stop)
			n.b.logger.Info("coordinating consumer groups", "node", n.self.ID)
		case !leading && g.coord != nil:
			close(stop)
			id, addr := n.ctrl.leader()
			g.coord.stop(&NotCoordinatorError{LeaderID: id, LeaderAddr: addr})
			g.coord = nil
			n.b.logger.Info("no longer coordinating consumer groups", "node", n.self.ID, "leader", id)
		}
		g.mu.Unlock()
		select {
		case <-obs:
		case <-n.b.closing:
			g.mu.Lock()
			if g.coord != nil {
				close(stop)
				g.coord.stop(errorf(ErrShuttingDown, "node %d is shutting down; join the group again on another node", n.self.ID))
				g.coord = nil
			}
			g.mu.Unlock()
			return
		}
	}
}

// clusterOffsets keeps committed offsets in the controller state. Commits
// that arrive while proposals are under way wait for one to finish and are
// then proposed together, in one controller command; up to
// maxOffsetProposals run at once. Commits apply in any order without
// harm (an offset never moves back), but a seek or a delete does not: a
// batch holding one waits until nothing else is in flight, and nothing
// starts while it is.
type clusterOffsets struct {
	n *clusterNode

	mu       sync.Mutex
	next     []*offsetWrite
	inflight int
	barrier  bool // an ordered batch is in flight
}

const maxOffsetProposals = 4

func (o *clusterOffsets) commitOffsets(ctx context.Context, group string, offs map[tp]int64, force bool) error {
	m := make(map[string]int64, len(offs))
	for p, off := range offs {
		m[p.String()] = off
	}
	return o.write(ctx, offsetOp{Group: group, Offsets: m, Force: force})
}

func (o *clusterOffsets) deleteOffsets(ctx context.Context, group string) error {
	return o.write(ctx, offsetOp{Group: group, Delete: true})
}

func (o *clusterOffsets) offsets(group string) map[tp]int64 {
	f := o.n.ctrl.fsm
	f.mu.RLock()
	defer f.mu.RUnlock()
	return parseOffsets(f.state.Offsets[group])
}

func (o *clusterOffsets) groups() []string {
	f := o.n.ctrl.fsm
	f.mu.RLock()
	defer f.mu.RUnlock()
	return slices.Sorted(maps.Keys(f.state.Offsets))
}

// write queues op and waits until the batch it goes out in is committed.
func (o *clusterOffsets) write(ctx context.Context, op offsetOp) error {
	w := &offsetWrite{op: op, done: make(chan error, 1)}
	o.mu.Lock()
	o.next = append(o.next, w)
	o.pumpLocked()
	o.mu.Unlock()
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		// The batch may still commit; the caller learns it did not wait.
		return ctx.Err()
	}
}

// pumpLocked starts proposals for the queued changes while there is room.
func (o *clusterOffsets) pumpLocked() {
	for len(o.next) > 0 && o.inflight < maxOffsetProposals && !o.barrier {
		ordered := false
		for _, w := range o.next {
			if w.op.Force || w.op.Delete {
				ordered = true
			}
		}
		if ordered && o.inflight > 0 {
			return // the seek or delete waits for the commits before it
		}
		batch := o.next
		o.next = nil
		o.inflight++
		o.barrier = ordered
		go o.propose(batch, ordered)
	}
}

func (o *clusterOffsets) propose(batch []*offsetWrite, ordered bool) {
	ops := make([]offsetOp, len(batch))
	for i, w := range batch {
		ops[i] = w.op
	}
	// The batch outlives any one caller's context, but not a controller
	// that stays without a leader.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err := o.n.propose(ctx, command{CommitOffsets: &commitOffsetsCmd{Ops: ops}})
	cancel()
	for _, w := range batch {
		w.done <- err
	}
	o.mu.Lock()
	o.inflight--
	if ordered {
		o.barrier = false
	}
	o.pumpLocked()
	o.mu.Unlock()
}
