package broker

import (
	"maps"
	"slices"
	"strconv"
	"strings"
)

// This file holds the cluster state's side of moving replicas: reassigning
// a partition, draining a node that is being removed, and the reports of
// partition leaders that tell when the data has moved. The partition
// leaders do the moving itself (cluster_membership.go); the controller
// leader finishes a removal (cluster_removal.go).

// liveNodes returns the ids of the nodes that take replicas: every node
// but those being removed, sorted.
func (s *clusterState) liveNodes() []int32 {
	var out []int32
	for _, id := range slices.Sorted(maps.Keys(s.Nodes)) {
		if !s.Nodes[id].Draining {
			out = append(out, id)
		}
	}
	return out
}

// holds counts the partitions whose replicas or raft group include node id.
func (s *clusterState) holds(id int32) int {
	n := 0
	for _, t := range s.Topics {
		for _, pm := range t.Partitions {
			if slices.Contains(pm.members(), id) {
				n++
			}
		}
	}
	return n
}

// drained returns the nodes being removed that no partition holds any
// more, sorted: what is left is to take them out of the controller group
// and forget them.
func (s *clusterState) drained() []int32 {
	var out []int32
	for _, id := range slices.Sorted(maps.Keys(s.Nodes)) {
		if s.Nodes[id].Draining && s.holds(id) == 0 {
			out = append(out, id)
		}
	}
	return out
}

// setReplicas makes rs the replicas of partition p of topic t and
// remembers which servers may still be in its raft group.
func (s *clusterState) setReplicas(t clusterTopic, p int, rs []int32) {
	pm := &t.Partitions[p]
	if !pm.moving() {
		pm.Members = slices.Sorted(slices.Values(pm.Replicas))
	}
	pm.Replicas = slices.Clone(rs)
	pm.Reassigned = true
	if sameSet(pm.Members, pm.Replicas) {
		pm.Members = nil
	}
}

// reassign applies a ReassignPartition command.
func (s *clusterState) reassign(c reassignCmd) error {
	t, ok := s.Topics[c.Topic]
	if !ok {
		return &TopicNotFoundError{Topic: c.Topic}
	}
	if c.Partition < 0 || c.Partition >= len(t.Partitions) {
		return &PartitionNotFoundError{Topic: c.Topic, Partition: int32(c.Partition), Partitions: len(t.Partitions)}
	}
	if len(c.Replicas) == 0 {
		return errorf(ErrInvalidRequest, "no replicas given for %s/%d; name the nodes that should hold it, as in --replicas 1,2,3", c.Topic, c.Partition)
	}
	for i, id := range c.Replicas {
		n, ok := s.Nodes[id]
		switch {
		case !ok:
			return errorf(ErrInvalidRequest, "node %d is not in the cluster; see the nodes with: runnel cluster info", id)
		case n.Draining:
			return errorf(ErrInvalidRequest, "node %d is being removed from the cluster and takes no replicas; choose other nodes", id)
		case slices.Contains(c.Replicas[:i], id):
			return errorf(ErrInvalidRequest, "node %d appears twice in the replicas of %s/%d; a node holds one replica of a partition", id, c.Topic, c.Partition)
		}
	}
	pm := t.Partitions[c.Partition]
	if slices.Equal(pm.Replicas, c.Replicas) {
		return nil
	}
	if pm.LeaderTerm == 0 {
		return errorf(ErrNoLeader, "%s/%d has not elected its first leader yet; retry shortly", c.Topic, c.Partition)
	}
	s.setReplicas(t, c.Partition, c.Replicas)
	return nil
}

// noteMembers applies a partition leader's report of its raft group.
func (s *clusterState) noteMembers(c membersCmd) {
	t, ok := s.Topics[c.Topic]
	if !ok || t.ID != c.TopicID || c.Partition < 0 || c.Partition >= len(t.Partitions) {
		return // the topic went away or was recreated
	}
	pm := &t.Partitions[c.Partition]
	if c.Term < pm.MembersTerm || c.Term == pm.MembersTerm && c.Index < pm.MembersIndex {
		return
	}
	pm.MembersTerm, pm.MembersIndex = c.Term, c.Index
	if sameSet(c.Members, pm.Replicas) && len(c.Nonvoters) == 0 {
		pm.Members = nil
		return
	}
	pm.Members = slices.Sorted(slices.Values(c.Members))
}

// drainNode applies a RemoveNode command: it marks the node as being
// removed and reassigns each of its replicas to the live node with the
// fewest replicas that does not hold one of that partition yet. It refuses,
// changing nothing, when a partition has nowhere to go.
func (s *clusterState) drainNode(id int32) error {
	node, ok := s.Nodes[id]
	if !ok {
		return errorf(ErrInvalidRequest, "node %d is not in the cluster; see the nodes with: runnel cluster info", id)
	}
	if node.Draining {
		return nil // under way
	}
	var live []int32
	for _, n := range s.liveNodes() {
		if n != id {
			live = append(live, n)
		}
	}
	if len(live) == 0 {
		return errorf(ErrInvalidRequest, "node %d is the last node that holds replicas; a cluster cannot remove its last node", id)
	}
	// Load of each live node: replicas, and partitions it is the
	// preferred leader of.
	load, leads := map[int32]int{}, map[int32]int{}
	for _, t := range s.Topics {
		for _, pm := range t.Partitions {
			for i, r := range pm.Replicas {
				load[r]++
				if i == 0 {
					leads[r]++
				}
			}
		}
	}
	type move struct {
		t  clusterTopic
		p  int
		rs []int32
	}
	var moves []move
	for _, name := range slices.Sorted(maps.Keys(s.Topics)) {
		t := s.Topics[name]
		for p, pm := range t.Partitions {
			at := slices.Index(pm.Replicas, id)
			if at < 0 {
				continue
			}
			if pm.LeaderTerm == 0 {
				return errorf(ErrNoLeader, "cannot remove node %d yet: %s/%d has not elected its first leader; retry shortly", id, name, p)
			}
			var to int32
			for _, n := range live {
				if !slices.Contains(pm.Replicas, n) && (to == 0 || load[n] < load[to]) {
					to = n
				}
			}
			if to == 0 {
				return cannotDrain(id, name, p, pm.Replicas, len(live))
			}
			rs := slices.Clone(pm.Replicas)
			rs[at] = to
			load[to]++
			if at == 0 {
				// The preferred leader moves to the new replica set's
				// node with the fewest partitions to lead, the new
				// replica when that is a tie.
				best := 0
				for i, r := range rs {
					if leads[r] < leads[rs[best]] {
						best = i
					}
				}
				rs[0], rs[best] = rs[best], rs[0]
				leads[rs[0]]++
			}
			moves = append(moves, move{t, p, rs})
		}
	}
	node.Draining = true
	node.DrainReplicas = s.holds(id)
	s.Nodes[id] = node
	for _, m := range moves {
		s.setReplicas(m.t, m.p, m.rs)
	}
	return nil
}

// cannotDrain explains why node id cannot be removed: partition p of topic
// has as many replicas as there are nodes left. It says what the user can
// do: add a node first, or give the partition fewer replicas.
func cannotDrain(id int32, topic string, p int, replicas []int32, left int) error {
	var rest []string
	for _, r := range replicas {
		if r != id {
			rest = append(rest, strconv.Itoa(int(r)))
		}
	}
	return errorf(ErrInvalidRequest,
		"cannot remove node %d: topic %q has replication factor %d and only %d other node(s) would remain to hold %s/%d; "+
			"add a node first (runnel serve --id N ..., then runnel cluster add N HOST:PORT) and remove node %d again, "+
			"or give the topic's partitions fewer replicas, one partition at a time, as in: runnel topic reassign %s --partition %d --replicas %s",
		id, topic, len(replicas), left, topic, p, id, topic, p, strings.Join(rest, ","))
}

// sameSet reports whether a and b hold the same ids, in any order.
func sameSet(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}
