package broker

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/status"

	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// clusterOnly answers admin calls that need a cluster on a single node.
func (s *service) clusterNode() (*clusterNode, error) {
	if s.b.cluster == nil {
		return nil, errorf(ErrInvalidRequest, "this node runs alone; start it with --id and --cluster to form a cluster")
	}
	return s.b.cluster, nil
}

func (s *service) Propose(ctx context.Context, req *runnelpb.ProposeRequest) (*runnelpb.ProposeResponse, error) {
	n, err := s.clusterNode()
	if err != nil {
		return nil, toStatus(err)
	}
	cmd, err := decodeCommand(req.Command)
	if err != nil {
		return nil, toStatus(errorf(ErrInvalidRequest, "%v", err))
	}
	if n.ctrl.raft.State() != raft.Leader {
		return nil, toStatus(errorf(ErrNoLeader, "node %d does not lead the controller", n.self.ID))
	}
	index, err := n.ctrl.applyLocal(ctx, cmd)
	if err != nil {
		return nil, toStatus(err)
	}
	return &runnelpb.ProposeResponse{Index: index}, nil
}

func (s *service) ClusterInfo(ctx context.Context, req *runnelpb.ClusterInfoRequest) (*runnelpb.ClusterInfoResponse, error) {
	nodes, ctrl := s.b.topics.nodes()
	resp := &runnelpb.ClusterInfoResponse{Controller: ctrl, Node: s.b.opts.NodeID}
	n := s.b.cluster
	if n == nil {
		parts := 0
		for _, t := range s.b.topics.list() {
			parts += len(t.assign)
		}
		for _, nm := range nodes {
			resp.Nodes = append(resp.Nodes, &runnelpb.Node{Id: nm.ID, Addr: nm.Addr, Http: nm.HTTP, Replicas: int32(parts)})
		}
		return resp, nil
	}
	st, _ := n.ctrl.fsm.view()
	for _, id := range slices.Sorted(maps.Keys(st.Nodes)) {
		resp.Nodes = append(resp.Nodes, nodeInfo(st, st.Nodes[id]))
	}
	resp.Removed = slices.Sorted(maps.Keys(st.Removed))
	for _, name := range slices.Sorted(maps.Keys(st.Topics)) {
		for p, pm := range st.Topics[name].Partitions {
			if pm.moving() {
				resp.Moves = append(resp.Moves, &runnelpb.PartitionMove{Topic: name, Partition: int32(p), Replicas: pm.Replicas, Members: pm.Members})
			}
		}
	}
	resp.Groups = append(resp.Groups, raftInfo(controllerGroup, n.ctrl.raft))
	resp.Groups = append(resp.Groups, n.catalog.groupInfos()...)
	return resp, nil
}

// nodeInfo describes a node of st with the replicas it holds.
func nodeInfo(st *clusterState, nm nodeMeta) *runnelpb.Node {
	return &runnelpb.Node{Id: nm.ID, Addr: nm.Addr, Http: nm.HTTP, Draining: nm.Draining, Replicas: int32(st.holds(nm.ID)), DrainReplicas: int32(nm.DrainReplicas)}
}

// raftInfo describes one raft member.
func raftInfo(group string, r *raft.Raft) *runnelpb.RaftGroupInfo {
	_, id := r.LeaderWithID()
	leader, _ := strconv.Atoi(string(id))
	stats := r.Stats()
	term, _ := strconv.ParseUint(stats["term"], 10, 64)
	info := &runnelpb.RaftGroupInfo{
		Group:        group,
		State:        r.State().String(),
		Leader:       int32(leader),
		Term:         term,
		CommitIndex:  r.CommitIndex(),
		AppliedIndex: r.AppliedIndex(),
	}
	if r.State() != raft.Leader {
		if last := r.LastContact(); !last.IsZero() {
			info.LastContactMs = time.Since(last).Milliseconds()
		}
	}
	return info
}

func (s *service) AddNode(ctx context.Context, req *runnelpb.AddNodeRequest) (*runnelpb.AddNodeResponse, error) {
	n, err := s.clusterNode()
	if err != nil {
		return nil, toStatus(err)
	}
	if req.Node == nil || req.Node.Id <= 0 || req.Node.Addr == "" {
		return nil, toStatus(errorf(ErrInvalidRequest, "add node needs an id > 0 and an address"))
	}
	if fwd, ok, err := n.toControllerLeader(); err != nil {
		return nil, toStatus(err)
	} else if ok {
		return fwd.AddNode(ctx, req)
	}
	if err := n.checkJoiner(ctx, req.Node); err != nil {
		return nil, toStatus(err)
	}
	f := n.ctrl.raft.AddVoter(nodeIDString(req.Node.Id), raft.ServerAddress(req.Node.Addr), 0, 30*time.Second)
	if err := f.Error(); err != nil {
		return nil, toStatus(raftError(err))
	}
	if err := n.propose(ctx, command{AddNode: &nodeMeta{ID: req.Node.Id, Addr: req.Node.Addr, HTTP: req.Node.Http}}); err != nil {
		return nil, toStatus(err)
	}
	return &runnelpb.AddNodeResponse{}, nil
}

func (s *service) RemoveNode(ctx context.Context, req *runnelpb.RemoveNodeRequest) (*runnelpb.RemoveNodeResponse, error) {
	n, err := s.clusterNode()
	if err != nil {
		return nil, toStatus(err)
	}
	if fwd, ok, err := n.toControllerLeader(); err != nil {
		return nil, toStatus(err)
	} else if ok {
		return fwd.RemoveNode(ctx, req)
	}
	if err := n.propose(ctx, command{RemoveNode: &req.Id}); err != nil {
		return nil, toStatus(err)
	}
	s.b.logger.Info("removing node: its replicas move to the other nodes", "node", req.Id)
	st, _ := n.ctrl.fsm.view()
	nm, ok := st.Nodes[req.Id]
	if !ok {
		return &runnelpb.RemoveNodeResponse{Node: &runnelpb.Node{Id: req.Id}}, nil // gone already
	}
	return &runnelpb.RemoveNodeResponse{Node: nodeInfo(st, nm)}, nil
}

func (s *service) ReassignPartition(ctx context.Context, req *runnelpb.ReassignPartitionRequest) (*runnelpb.ReassignPartitionResponse, error) {
	n, err := s.clusterNode()
	if err != nil {
		return nil, toStatus(err)
	}
	// The controller leader answers, so that a caller following the move
	// there sees it at once.
	if fwd, ok, err := n.toControllerLeader(); err != nil {
		return nil, toStatus(err)
	} else if ok {
		return fwd.ReassignPartition(ctx, req)
	}
	cmd := reassignCmd{Topic: req.Topic, Partition: int(req.Partition), Replicas: req.Replicas}
	if err := n.propose(ctx, command{ReassignPartition: &cmd}); err != nil {
		return nil, toStatus(err)
	}
	t, err := n.catalog.get(req.Topic)
	if err != nil {
		return nil, toStatus(err)
	}
	info := s.topicInfo(t)
	if int(req.Partition) >= len(info.Partitions) {
		return nil, toStatus(&PartitionNotFoundError{Topic: req.Topic, Partition: req.Partition, Partitions: len(info.Partitions)})
	}
	resp := &runnelpb.ReassignPartitionResponse{Partition: info.Partitions[req.Partition]}
	st, _ := n.ctrl.fsm.view()
	if ct, ok := st.Topics[req.Topic]; ok && ct.ID == t.meta.ID {
		resp.Members = ct.Partitions[req.Partition].Members
	}
	s.b.logger.Info("partition reassigned", "topic", req.Topic, "partition", req.Partition, "replicas", req.Replicas, "members", resp.Members)
	return resp, nil
}

func (s *service) ReplicaStatus(ctx context.Context, req *runnelpb.ReplicaStatusRequest) (*runnelpb.ReplicaStatusResponse, error) {
	n, err := s.clusterNode()
	if err != nil {
		return nil, toStatus(err)
	}
	resp, err := n.catalog.statusHere(log.ID{Topic: req.TopicId, Partition: uint32(req.Partition)}, req.SyncLog)
	if err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}

// checkJoiner asks a node about to be added whether it is up and free to
// join: it must answer as the node id it is added as, and must not lead or
// follow a controller other than this cluster's (which it would if it was
// started without the running nodes in --cluster and formed a cluster of
// its own).
func (n *clusterNode) checkJoiner(ctx context.Context, node *runnelpb.Node) error {
	conn, err := n.peer(node.Addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := runnelpb.NewBrokerClient(conn).ClusterInfo(ctx, &runnelpb.ClusterInfoRequest{})
	if err != nil {
		return errorf(ErrInvalidRequest, "node %d at %s does not answer (%s); start it first with: runnel serve --id %d --addr %s --cluster %s",
			node.Id, node.Addr, status.Convert(err).Message(), node.Id, node.Addr, n.clusterFlag(node))
	}
	if info.Node != node.Id {
		return errorf(ErrInvalidRequest, "the node at %s is node %d, not %d; add it as: runnel cluster add %d %s", node.Addr, info.Node, node.Id, info.Node, node.Addr)
	}
	if leader, _ := n.ctrl.leader(); info.Controller != 0 && info.Controller != leader {
		return errorf(ErrInvalidRequest, "node %d at %s already belongs to another cluster (its controller leader is node %d); stop it, delete its data folder and start it again with --cluster %s",
			node.Id, node.Addr, info.Controller, n.clusterFlag(node))
	}
	return nil
}

// clusterFlag returns the --cluster value a node joining as node needs: the
// cluster's nodes and itself.
func (n *clusterNode) clusterFlag(node *runnelpb.Node) string {
	st, _ := n.ctrl.fsm.view()
	var parts []string
	for _, id := range slices.Sorted(maps.Keys(st.Nodes)) {
		if id != node.Id {
			parts = append(parts, fmt.Sprintf("%d=%s", id, st.Nodes[id].Addr))
		}
	}
	parts = append(parts, fmt.Sprintf("%d=%s", node.Id, node.Addr))
	return strings.Join(parts, ",")
}
