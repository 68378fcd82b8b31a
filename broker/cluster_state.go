package broker

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
)

// clusterState is the metadata the controller raft group replicates: the
// nodes, the topics with their partition assignments and configs, and the
// last known leader of every partition. It is a pure state machine: apply
// is deterministic, so every node that applies the same commands in the
// same order holds the same state.
type clusterState struct {
	Nodes       map[int32]nodeMeta      `json:"nodes"`
	Topics      map[string]clusterTopic `json:"topics"`
	NextTopicID uint32                  `json:"next_topic_id"`
	// Offsets are the consumer groups' committed offsets: group →
	// "topic/partition" → the next offset to read (groups_cluster.go).
	// clone leaves them out: readers of the state get them from the FSM.
	Offsets map[string]map[string]int64 `json:"offsets,omitempty"`
	// Removed holds the ids of the nodes removed from the cluster: such a
	// node may not register again (RegisterNode) until an operator adds it
	// back (AddNode).
	Removed map[int32]bool `json:"removed,omitempty"`
}

// nodeMeta is one node of the cluster.
type nodeMeta struct {
	ID   int32  `json:"id"`
	Addr string `json:"addr"`
	HTTP string `json:"http,omitempty"`
	// Draining is set once the node's removal has started: it takes no new
	// replicas, its replicas are reassigned to other nodes, and it leaves
	// the cluster once none of them is in a partition's raft group any more.
	Draining bool `json:"draining,omitempty"`
	// DrainReplicas is how many replicas the node held when its removal
	// started, to show progress against.
	DrainReplicas int `json:"drain_replicas,omitempty"`
}

// clusterTopic is a topic with its partition assignment.
type clusterTopic struct {
	Name    string            `json:"name"`
	ID      uint32            `json:"id"`
	Configs map[string]string `json:"configs,omitempty"`
	// Partitions[p] is partition p.
	Partitions []partitionMeta `json:"partitions"`
}

// partitionMeta is one partition's replicas, the first being the preferred
// leader, and the leader last reported.
type partitionMeta struct {
	Replicas []int32 `json:"replicas"`
	Leader   int32   `json:"leader,omitempty"`
	// LeaderTerm is the partition raft term of the report, so a stale
	// report never overwrites a newer one.
	LeaderTerm uint64 `json:"leader_term,omitempty"`
	// Members is set while the partition's raft group may differ from
	// Replicas, after a reassignment: the group's servers as its leader last
	// reported them, including a server the leader is about to add. Every
	// node in Replicas or Members runs a replica; a node in Members only
	// stops and drops its replica once a report leaves it out. Empty when
	// the group is known to be Replicas.
	Members []int32 `json:"members,omitempty"`
	// MembersTerm and MembersIndex order membership reports (the leader's
	// raft term, then its last log index), so that a stale one never
	// overwrites a newer one.
	MembersTerm  uint64 `json:"members_term,omitempty"`
	MembersIndex uint64 `json:"members_index,omitempty"`
	// Reassigned is set once Replicas is no longer the list the partition
	// was created with. Only the replicas of a partition never reassigned
	// bootstrap its raft group; a replica that joins later is added by the
	// leader, since bootstrapping it with another server list would start a
	// second group that diverges from the first.
	Reassigned bool `json:"reassigned,omitempty"`
}

// members returns the nodes that take part in the partition's raft group
// or are assigned to it: every node that must run a replica.
func (pm partitionMeta) members() []int32 {
	out := slices.Clone(pm.Replicas)
	for _, m := range pm.Members {
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

// moving reports whether the partition's raft group may still differ from
// its replicas.
func (pm partitionMeta) moving() bool { return len(pm.Members) > 0 }

func newClusterState() *clusterState {
	return &clusterState{Nodes: map[int32]nodeMeta{}, Topics: map[string]clusterTopic{}, NextTopicID: 1}
}

// command is one change to the cluster state, as proposed to the
// controller group. Exactly one field is set.
type command struct {
	// AddNode adds a node, or updates one: runnel cluster add.
	AddNode *nodeMeta `json:"add_node,omitempty"`
	// RegisterNode is a node's own registration on every start: as AddNode,
	// but refused for a node that was removed.
	RegisterNode  *nodeMeta         `json:"register_node,omitempty"`
	RemoveNode    *int32            `json:"remove_node,omitempty"`
	CreateTopic   *createTopicCmd   `json:"create_topic,omitempty"`
	DeleteTopic   *string           `json:"delete_topic,omitempty"`
	AlterConfigs  *alterConfigsCmd  `json:"alter_configs,omitempty"`
	LeaderChange  *leaderChangeCmd  `json:"leader_change,omitempty"`
	CommitOffsets *commitOffsetsCmd `json:"commit_offsets,omitempty"`
	// ReassignPartition sets a partition's replicas; the partition's
	// leader then moves its raft group to them.
	ReassignPartition *reassignCmd `json:"reassign_partition,omitempty"`
	// PartitionMembers is a partition leader's report of its raft group.
	PartitionMembers *membersCmd `json:"partition_members,omitempty"`
	// ForgetNode ends a removal: the drained node leaves the state, once
	// the controller leader has taken it out of the controller group.
	ForgetNode *int32 `json:"forget_node,omitempty"`
}

type createTopicCmd struct {
	Name       string `json:"name"`
	Partitions int    `json:"partitions"`
	// Replicas 0 means the default: 3, or every node when there are fewer.
	Replicas int               `json:"replicas"`
	Configs  map[string]string `json:"configs,omitempty"`
}

type alterConfigsCmd struct {
	Name   string            `json:"name"`
	Set    map[string]string `json:"set,omitempty"`
	Delete []string          `json:"delete,omitempty"`
}

type reassignCmd struct {
	Topic     string  `json:"topic"`
	Partition int     `json:"partition"`
	Replicas  []int32 `json:"replicas"`
}

type membersCmd struct {
	Topic     string  `json:"topic"`
	TopicID   uint32  `json:"topic_id"`
	Partition int     `json:"partition"`
	Members   []int32 `json:"members"`
	// Nonvoters are the members that do not vote yet: a move is not done
	// until every replica votes.
	Nonvoters []int32 `json:"nonvoters,omitempty"`
	Term      uint64  `json:"term"`
	Index     uint64  `json:"index"`
}

type leaderChangeCmd struct {
	Topic     string `json:"topic"`
	TopicID   uint32 `json:"topic_id"`
	Partition int    `json:"partition"`
	Leader    int32  `json:"leader"`
	Term      uint64 `json:"term"`
}

func (c command) encode() []byte {
	if c.CommitOffsets != nil && c == (command{CommitOffsets: c.CommitOffsets}) {
		return encodeOffsets(c.CommitOffsets)
	}
	return mustJSON(c)
}

func decodeCommand(data []byte) (command, error) {
	var c command
	if len(data) > 0 && data[0] == commandOffsets {
		offs, err := decodeOffsets(data)
		if err != nil {
			return c, fmt.Errorf("decode controller command: %w", err)
		}
		c.CommitOffsets = offs
		return c, nil
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("decode controller command: %w", err)
	}
	return c, nil
}

// apply applies one command. A command that is refused (a topic that
// exists, a bad config) changes nothing and returns the error, which the
// proposer hands back to its caller.
func (s *clusterState) apply(c command) error {
	switch {
	case c.AddNode != nil:
		if err := s.putNode(*c.AddNode); err != nil {
			return err
		}
		delete(s.Removed, c.AddNode.ID)
		return nil
	case c.RegisterNode != nil:
		if id := c.RegisterNode.ID; s.Removed[id] {
			return errorf(ErrInvalidRequest, "node %d was removed from the cluster: stop it and delete its data folder; to bring it back, start it with an empty data folder and run runnel cluster add %d %s", id, id, c.RegisterNode.Addr)
		}
		return s.putNode(*c.RegisterNode)
	case c.RemoveNode != nil:
		return s.drainNode(*c.RemoveNode)
	case c.ForgetNode != nil:
		id := *c.ForgetNode
		n, ok := s.Nodes[id]
		if !ok {
			return nil // forgotten already
		}
		if !n.Draining || s.holds(id) > 0 {
			return errorf(ErrInvalidRequest, "node %d still holds replicas; it leaves once they have moved", id)
		}
		delete(s.Nodes, id)
		if s.Removed == nil {
			s.Removed = map[int32]bool{}
		}
		s.Removed[id] = true
		return nil
	case c.ReassignPartition != nil:
		return s.reassign(*c.ReassignPartition)
	case c.PartitionMembers != nil:
		s.noteMembers(*c.PartitionMembers)
		return nil
	case c.CreateTopic != nil:
		return s.createTopic(*c.CreateTopic)
	case c.DeleteTopic != nil:
		if _, ok := s.Topics[*c.DeleteTopic]; !ok {
			return &TopicNotFoundError{Topic: *c.DeleteTopic}
		}
		delete(s.Topics, *c.DeleteTopic)
		return nil
	case c.AlterConfigs != nil:
		a := c.AlterConfigs
		t, ok := s.Topics[a.Name]
		if !ok {
			return &TopicNotFoundError{Topic: a.Name}
		}
		configs := maps.Clone(t.Configs)
		if configs == nil {
			configs = map[string]string{}
		}
		for _, k := range a.Delete {
			if _, ok := configSpecs[k]; !ok {
				return errorf(ErrInvalidConfig, "unknown config %q", k)
			}
			delete(configs, k)
		}
		maps.Copy(configs, a.Set)
		if _, err := validateConfigs(configs); err != nil {
			return err
		}
		t.Configs = configs
		s.Topics[a.Name] = t
		return nil
	case c.CommitOffsets != nil:
		return s.applyCommitOffsets(c.CommitOffsets)
	case c.LeaderChange != nil:
		lc := c.LeaderChange
		t, ok := s.Topics[lc.Topic]
		if !ok || t.ID != lc.TopicID || lc.Partition < 0 || lc.Partition >= len(t.Partitions) {
			return nil // the topic went away or was recreated: nothing to record
		}
		pm := &t.Partitions[lc.Partition]
		if lc.Term < pm.LeaderTerm {
			return nil
		}
		pm.Leader, pm.LeaderTerm = lc.Leader, lc.Term
		return nil
	}
	return errorf(ErrInvalidRequest, "empty controller command")
}

func (s *clusterState) createTopic(c createTopicCmd) error {
	if err := validateTopicName(c.Name); err != nil {
		return err
	}
	if c.Partitions < 1 || c.Partitions > maxPartitions {
		return errorf(ErrInvalidPartitions, "invalid partition count %d; a topic has 1 to %d partitions", c.Partitions, maxPartitions)
	}
	nodes := s.liveNodes()
	n := len(nodes)
	if c.Replicas == 0 {
		c.Replicas = min(defaultReplicas, n)
	}
	if c.Replicas < 1 || c.Replicas > n {
		return errorf(ErrInvalidConfig, "replication factor %d; the cluster has %d nodes, so use 1 to %d", c.Replicas, n, n)
	}
	if _, err := validateConfigs(c.Configs); err != nil {
		return err
	}
	if _, ok := s.Topics[c.Name]; ok {
		return errorf(ErrTopicExists, "topic %q already exists; see it with: runnel topic describe %s", c.Name, c.Name)
	}
	id := s.NextTopicID
	s.NextTopicID++
	t := clusterTopic{Name: c.Name, ID: id, Configs: maps.Clone(c.Configs), Partitions: assign(nodes, id, c.Partitions, c.Replicas)}
	s.Topics[c.Name] = t
	return nil
}

// assign places partitions' replicas round-robin over the sorted node ids,
// starting at a node chosen by the topic id, so that the first replica (the
// preferred leader) of consecutive partitions falls on consecutive nodes and
// different topics start on different nodes.
func assign(nodes []int32, topicID uint32, partitions, replicas int) []partitionMeta {
	out := make([]partitionMeta, partitions)
	start := int(topicID) % len(nodes)
	for p := range out {
		rs := make([]int32, replicas)
		for i := range rs {
			rs[i] = nodes[(start+p+i)%len(nodes)]
		}
		out[p] = partitionMeta{Replicas: rs}
	}
	return out
}

// putNode adds node n or updates it. A node registers again on every
// start: a removal under way goes on. An HTTP address left out (runnel
// cluster add does not know it) keeps the one the node registered.
func (s *clusterState) putNode(n nodeMeta) error {
	if n.ID <= 0 || n.Addr == "" {
		return errorf(ErrInvalidRequest, "node id %d at %q: a node needs a positive id and an address", n.ID, n.Addr)
	}
	if old, ok := s.Nodes[n.ID]; ok {
		n.Draining, n.DrainReplicas = old.Draining, old.DrainReplicas
		if n.HTTP == "" {
			n.HTTP = old.HTTP
		}
	}
	s.Nodes[n.ID] = n
	return nil
}

// clone returns a deep copy, for readers outside the FSM.
func (s *clusterState) clone() *clusterState {
	// The committed offsets are left out: they can be many, and change
	// far more often than the rest.
	cp := *s
	cp.Offsets = nil
	var out clusterState
	if err := json.Unmarshal(mustJSON(&cp), &out); err != nil {
		panic(fmt.Sprintf("decode cluster state: %v", err))
	}
	return &out
}

func mustJSON(v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encode %T: %v", v, err))
	}
	return data
}

func unmarshalJSON(data []byte, v any) error { return json.Unmarshal(data, v) }
