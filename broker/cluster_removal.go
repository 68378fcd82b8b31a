package broker

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// finishRemovals ends the removal of drained nodes: on the controller
// leader, each node being removed that no partition holds any more is taken
// out of the controller group, then out of the cluster state. It runs on
// every node, since any node may lead the controller, at every state change
// and, while a removal waits, every second (a new controller leader brings
// no state change).
func (n *clusterNode) finishRemovals() {
	told := false
	// waiting holds the drained nodes this node, as the controller leader,
	// waits for; only this goroutine uses it.
	waiting := map[int32]dropWait{}
	for {
		st, changed := n.ctrl.fsm.view()
		drained := st.drained()
		if !told && slices.Contains(drained, n.self.ID) {
			n.b.logger.Warn("this node holds no replicas any more and leaves the cluster; stop it once runnel cluster info no longer lists it", "node", n.self.ID)
			told = true
		}
		leading := n.ctrl.raft.State() == raft.Leader
		for id := range waiting {
			if !leading || !slices.Contains(drained, id) {
				delete(waiting, id)
			}
		}
		if len(drained) > 0 && leading {
			for _, id := range drained {
				if err := n.finishRemoval(id, waiting); err != nil {
					n.b.logger.Warn("finish removing a node", "node", id, "err", err)
				}
			}
		}
		var again <-chan time.Time
		if len(drained) > 0 {
			again = time.After(time.Second)
		}
		select {
		case <-changed:
		case <-again:
		case <-n.b.closing:
			return
		}
	}
}

// dropWait is a drained node the controller leader waits for: since when,
// and the controller index the node must have applied, one at which the
// state already had it drained.
type dropWait struct {
	since time.Time
	index uint64
}

// finishRemoval takes drained node id out of the controller group and then
// out of the state. If id is this node, it hands the controller leadership
// to another node, which finishes. Before that it waits, up to
// dropWaitLimit from the first try (in waiting), until a node that
// answers has applied the moves of its last replicas and stopped them:
// out of the controller group it gets no more of its entries, and would
// keep replicas it had not yet let go of, with their data.
func (n *clusterNode) finishRemoval(id int32, waiting map[int32]dropWait) error {
	if id == n.self.ID {
		n.b.logger.Info("this node is removed from the cluster; handing the controller leadership over", "node", id)
		return n.ctrl.raft.LeadershipTransfer().Error()
	}
	f := n.ctrl.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	if slices.ContainsFunc(f.Configuration().Servers, func(s raft.Server) bool { return s.ID == nodeIDString(id) }) {
		w, ok := waiting[id]
		if !ok {
			w = dropWait{since: time.Now(), index: n.ctrl.raft.AppliedIndex()}
			waiting[id] = w
		}
		if busy := n.stillRunning(id, w.index); busy != "" {
			if !ok {
				n.b.logger.Info("waiting for the removed node to stop its replicas before it leaves the controller group", "node", id, "state", busy)
			}
			if time.Since(w.since) < dropWaitLimit {
				return nil
			}
			n.b.logger.Warn("the removed node still runs replicas; it leaves the controller group anyway: stop it and delete its data folder", "node", id, "state", busy, "waited", time.Since(w.since).Round(time.Second))
		}
		if err := n.ctrl.raft.RemoveServer(nodeIDString(id), 0, 10*time.Second).Error(); err != nil {
			return fmt.Errorf("remove from the controller group: %w", raftError(err))
		}
	}
	delete(waiting, id)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.propose(ctx, command{ForgetNode: &id}); err != nil {
		return err
	}
	n.b.logger.Info("node removed from the cluster", "node", id)
	return nil
}

// dropWaitLimit bounds how long the controller leader waits for a removed
// node that answers but keeps running replicas, or stays behind the
// controller's state, before it takes the node out of the controller group
// anyway.
const dropWaitLimit = time.Minute

// stillRunning asks drained node id whether it has applied the controller
// entries up to index and runs no partition replica. It returns "" when
// so, or when the node does not answer within 2s: a node that is down
// cannot confirm, and its removal must not wait for it. Otherwise it
// returns what the node still has to do.
func (n *clusterNode) stillRunning(id int32, index uint64) string {
	st, _ := n.ctrl.fsm.view()
	nm, ok := st.Nodes[id]
	if !ok {
		return ""
	}
	info, err := n.askClusterInfo(nm.Addr, 2*time.Second)
	if err != nil || info.Node != id {
		return ""
	}
	var replicas []string
	var behind string
	for _, g := range info.Groups {
		switch {
		case g.Group != controllerGroup:
			replicas = append(replicas, g.Group)
		case g.AppliedIndex < index:
			behind = fmt.Sprintf("controller state applied to index %d of %d", g.AppliedIndex, index)
		}
	}
	switch {
	case behind != "":
		return behind
	case len(replicas) > 0:
		return fmt.Sprintf("runs replicas of %s", strings.Join(replicas, ", "))
	}
	return ""
}
