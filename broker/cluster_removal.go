package broker

import (
	"context"
	"fmt"
	"slices"
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
	for {
		st, changed := n.ctrl.fsm.view()
		drained := st.drained()
		if !told && slices.Contains(drained, n.self.ID) {
			n.b.logger.Warn("this node holds no replicas any more and leaves the cluster; stop it once runnel cluster info no longer lists it", "node", n.self.ID)
			told = true
		}
		if len(drained) > 0 && n.ctrl.raft.State() == raft.Leader {
			for _, id := range drained {
				if err := n.finishRemoval(id); err != nil {
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

// finishRemoval takes drained node id out of the controller group and then
// out of the state. If id is this node, it hands the controller leadership
// to another node, which finishes.
func (n *clusterNode) finishRemoval(id int32) error {
	if id == n.self.ID {
		n.b.logger.Info("this node is removed from the cluster; handing the controller leadership over", "node", id)
		return n.ctrl.raft.LeadershipTransfer().Error()
	}
	f := n.ctrl.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	if slices.ContainsFunc(f.Configuration().Servers, func(s raft.Server) bool { return s.ID == nodeIDString(id) }) {
		if err := n.ctrl.raft.RemoveServer(nodeIDString(id), 0, 10*time.Second).Error(); err != nil {
			return fmt.Errorf("remove from the controller group: %w", raftError(err))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.propose(ctx, command{ForgetNode: &id}); err != nil {
		return err
	}
	n.b.logger.Info("node removed from the cluster", "node", id)
	return nil
}
