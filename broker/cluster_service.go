package broker

import (
	"context"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

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
	for _, n := range nodes {
		resp.Nodes = append(resp.Nodes, &runnelpb.Node{Id: n.ID, Addr: n.Addr, Http: n.HTTP})
	}
	if n := s.b.cluster; n != nil {
		resp.Groups = append(resp.Groups, raftInfo(controllerGroup, n.ctrl.raft))
		resp.Groups = append(resp.Groups, n.catalog.groupInfos()...)
	}
	return resp, nil
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
	if err := n.ctrl.raft.RemoveServer(nodeIDString(req.Id), 0, 30*time.Second).Error(); err != nil {
		return nil, toStatus(raftError(err))
	}
	return &runnelpb.RemoveNodeResponse{}, nil
}
