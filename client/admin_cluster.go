package client

import (
	"context"
	"fmt"

	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// NodeStatus is a node with the partition replicas it holds.
type NodeStatus struct {
	Node
	// Replicas counts the partitions the node holds a replica of: assigned,
	// or still in the partition's raft group while it moves away.
	Replicas int
	// Draining is set while the node is being removed: it takes no new
	// replicas, its replicas move to other nodes, and it leaves the cluster
	// once none remains.
	Draining bool
	// DrainReplicas is how many replicas the node held when its removal
	// started; DrainReplicas - Replicas have moved.
	DrainReplicas int
}

// PartitionMove is a partition whose replicas are being reassigned.
type PartitionMove struct {
	Topic     string
	Partition int32
	// Replicas are the nodes the partition moves to, the first being its
	// preferred leader.
	Replicas []int32
	// Members are the nodes of its raft group as its leader last reported
	// them; the move is done when they are Replicas.
	Members []int32
}

// Placement is where the cluster's replicas are, as one node sees it.
type Placement struct {
	// Node is the id of the node that answered; Controller the controller
	// leader it knows, 0 when none.
	Node       int32
	Controller int32
	Nodes      []NodeStatus
	// Moves are the partitions whose replicas are moving.
	Moves []PartitionMove
	// Removed are the ids of the nodes removed from the cluster and not
	// added back since. Such a node, started again on its old data, does
	// not rejoin.
	Removed []int32
}

// FindNode returns the status of node id and whether it is in the cluster.
func (p Placement) FindNode(id int32) (NodeStatus, bool) {
	for _, n := range p.Nodes {
		if n.ID == id {
			return n, true
		}
	}
	return NodeStatus{}, false
}

// FindMove returns the move of topic/partition under way, if any.
func (p Placement) FindMove(topic string, partition int32) (PartitionMove, bool) {
	for _, m := range p.Moves {
		if m.Topic == topic && m.Partition == partition {
			return m, true
		}
	}
	return PartitionMove{}, false
}

// ClusterPlacement returns the placement of replicas as the node at addr
// sees it or, with addr "", as the controller leader does: the view that
// is never behind, which is what to follow a removal or a reassignment by.
// It fails with ErrUnavailable when no broker reached knows a controller
// leader.
func (c *Client) ClusterPlacement(ctx context.Context, addr string) (Placement, error) {
	if addr != "" {
		return c.placementAt(ctx, addr)
	}
	var last error
	for _, a := range c.meta.brokerAddrs() {
		p, err := c.placementAt(ctx, a)
		if err != nil {
			if ctx.Err() != nil {
				return Placement{}, ctx.Err()
			}
			last = err
			continue
		}
		if p.Controller != 0 && p.Controller == p.Node {
			return p, nil
		}
		if lead, ok := p.FindNode(p.Controller); ok && p.Controller != 0 {
			if q, err := c.placementAt(ctx, lead.Addr); err == nil && q.Controller == q.Node {
				return q, nil
			}
		}
	}
	if last == nil {
		last = fmt.Errorf("no broker reached knows a controller leader; retry shortly")
	}
	return Placement{}, &Error{Kind: ErrUnavailable, Reason: "NO_LEADER", Message: last.Error()}
}

// placementAt asks the node at addr, and no other.
func (c *Client) placementAt(ctx context.Context, addr string) (Placement, error) {
	b, err := c.conn(addr)
	if err != nil {
		return Placement{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, c.cfg.requestTimeout)
	defer cancel()
	resp, err := b.ClusterInfo(cctx, &runnelpb.ClusterInfoRequest{})
	if err != nil {
		return Placement{}, fromStatus(err, addr)
	}
	out := Placement{Node: resp.GetNode(), Controller: resp.GetController(), Removed: resp.GetRemoved()}
	for _, n := range resp.GetNodes() {
		out.Nodes = append(out.Nodes, NodeStatus{
			Node:     Node{ID: n.GetId(), Addr: n.GetAddr(), HTTP: n.GetHttp()},
			Replicas: int(n.GetReplicas()), Draining: n.GetDraining(), DrainReplicas: int(n.GetDrainReplicas()),
		})
	}
	for _, m := range resp.GetMoves() {
		out.Moves = append(out.Moves, PartitionMove{Topic: m.GetTopic(), Partition: m.GetPartition(), Replicas: m.GetReplicas(), Members: m.GetMembers()})
	}
	return out, nil
}

// DecommissionNode starts removing node id from the cluster, or reports on
// a removal under way: the node takes no new replicas, each of its
// replicas is reassigned to the node with the fewest, the partitions'
// leaders move the data, and the node leaves once none remains. Follow the
// progress with ClusterPlacement; the removal is done when the node is no
// longer listed. It fails with ErrInvalidArgument when the node is not in
// the cluster, or when a partition has nowhere to go (its replication
// factor equals the nodes that would remain; the message says what to do).
func (c *Client) DecommissionNode(ctx context.Context, id int32) (NodeStatus, error) {
	var resp *runnelpb.RemoveNodeResponse
	err := c.call(ctx, "", func(ctx context.Context, b runnelpb.BrokerClient) (err error) {
		resp, err = b.RemoveNode(ctx, &runnelpb.RemoveNodeRequest{Id: id})
		return err
	})
	if err != nil {
		return NodeStatus{}, err
	}
	n := resp.GetNode()
	return NodeStatus{
		Node:     Node{ID: id, Addr: n.GetAddr(), HTTP: n.GetHttp()},
		Replicas: int(n.GetReplicas()), Draining: n.GetDraining(), DrainReplicas: int(n.GetDrainReplicas()),
	}, nil
}

// ReassignPartition sets the nodes that hold topic/partition, the first
// being its preferred leader; it may also change how many there are. The
// partition's leader then moves the data: new replicas join and catch up
// before they vote, then the others leave, while writes go on. It returns
// the partition as reassigned and, while it moves, the move (follow it
// with ClusterPlacement). It fails with ErrNotFound for an unknown topic or
// partition and ErrInvalidArgument for an unknown node, a node being
// removed, or a node named twice.
func (c *Client) ReassignPartition(ctx context.Context, topic string, partition int32, replicas []int32) (PartitionInfo, *PartitionMove, error) {
	var resp *runnelpb.ReassignPartitionResponse
	err := c.call(ctx, "", func(ctx context.Context, b runnelpb.BrokerClient) (err error) {
		resp, err = b.ReassignPartition(ctx, &runnelpb.ReassignPartitionRequest{Topic: topic, Partition: partition, Replicas: replicas})
		return err
	})
	if err != nil {
		return PartitionInfo{}, nil, err
	}
	c.meta.refresh()
	p := resp.GetPartition()
	info := PartitionInfo{Partition: p.GetPartition(), Leader: p.GetLeader(), Replicas: p.GetReplicas(), StartOffset: p.GetStartOffset(), EndOffset: p.GetEndOffset()}
	if len(resp.GetMembers()) == 0 {
		return info, nil, nil
	}
	return info, &PartitionMove{Topic: topic, Partition: partition, Replicas: p.GetReplicas(), Members: resp.GetMembers()}, nil
}
