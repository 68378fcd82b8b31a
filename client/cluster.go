package client

import (
	"context"
	"time"

	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// ClusterStatus is a cluster as one node sees it.
type ClusterStatus struct {
	// Node is the id of the node that answered.
	Node int32
	// Controller is the id of the controller leader, 0 when none.
	Controller int32
	Nodes      []Node
	// Groups are the raft groups the answering node takes part in.
	Groups []RaftGroup
}

// RaftGroup is one raft group member on a node.
type RaftGroup struct {
	// Group is "controller" or "TOPIC/PARTITION".
	Group string
	// State is Leader, Follower, Candidate or Shutdown.
	State        string
	Leader       int32
	Term         uint64
	CommitIndex  uint64
	AppliedIndex uint64
	// LastContact is the time since the leader was last heard from; zero on
	// the leader.
	LastContact time.Duration
}

// ClusterInfo asks the node at addr ("" for any broker) how it sees the
// cluster.
func (c *Client) ClusterInfo(ctx context.Context, addr string) (ClusterStatus, error) {
	var resp *runnelpb.ClusterInfoResponse
	err := c.call(ctx, addr, func(ctx context.Context, b runnelpb.BrokerClient) (err error) {
		resp, err = b.ClusterInfo(ctx, &runnelpb.ClusterInfoRequest{})
		return err
	})
	if err != nil {
		return ClusterStatus{}, err
	}
	out := ClusterStatus{Node: resp.GetNode(), Controller: resp.GetController()}
	for _, n := range resp.GetNodes() {
		out.Nodes = append(out.Nodes, Node{ID: n.GetId(), Addr: n.GetAddr(), HTTP: n.GetHttp()})
	}
	for _, g := range resp.GetGroups() {
		out.Groups = append(out.Groups, RaftGroup{
			Group: g.GetGroup(), State: g.GetState(), Leader: g.GetLeader(), Term: g.GetTerm(),
			CommitIndex: g.GetCommitIndex(), AppliedIndex: g.GetAppliedIndex(),
			LastContact: time.Duration(g.GetLastContactMs()) * time.Millisecond,
		})
	}
	return out, nil
}

// AddNode adds a node to the cluster. Start the node first with its
// --id, --addr and the --cluster list of the nodes already there.
func (c *Client) AddNode(ctx context.Context, n Node) error {
	return c.call(ctx, "", func(ctx context.Context, b runnelpb.BrokerClient) error {
		_, err := b.AddNode(ctx, &runnelpb.AddNodeRequest{Node: &runnelpb.Node{Id: n.ID, Addr: n.Addr, Http: n.HTTP}})
		return err
	})
}

// RemoveNode starts removing node id: its replicas move to the other nodes
// and it leaves once none remains. It returns when the removal has
// started; DecommissionNode does the same and also reports the progress.
func (c *Client) RemoveNode(ctx context.Context, id int32) error {
	return c.call(ctx, "", func(ctx context.Context, b runnelpb.BrokerClient) error {
		_, err := b.RemoveNode(ctx, &runnelpb.RemoveNodeRequest{Id: id})
		return err
	})
}
