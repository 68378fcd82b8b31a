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
}

// nodeMeta is one node of the cluster.
type nodeMeta struct {
	ID   int32  `json:"id"`
	Addr string `json:"addr"`
	HTTP string `json:"http,omitempty"`
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
}

func newClusterState() *clusterState {
	return &clusterState{Nodes: map[int32]nodeMeta{}, Topics: map[string]clusterTopic{}, NextTopicID: 1}
}

// command is one change to the cluster state, as proposed to the
// controller group. Exactly one field is set.
type command struct {
	AddNode      *nodeMeta        `json:"add_node,omitempty"`
	RemoveNode   *int32           `json:"remove_node,omitempty"`
	CreateTopic  *createTopicCmd  `json:"create_topic,omitempty"`
	DeleteTopic  *string          `json:"delete_topic,omitempty"`
	AlterConfigs *alterConfigsCmd `json:"alter_configs,omitempty"`
	LeaderChange *leaderChangeCmd `json:"leader_change,omitempty"`
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

type leaderChangeCmd struct {
	Topic     string `json:"topic"`
	TopicID   uint32 `json:"topic_id"`
	Partition int    `json:"partition"`
	Leader    int32  `json:"leader"`
	Term      uint64 `json:"term"`
}

func (c command) encode() []byte { return mustJSON(c) }

func decodeCommand(data []byte) (command, error) {
	var c command
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
		if c.AddNode.ID <= 0 || c.AddNode.Addr == "" {
			return errorf(ErrInvalidRequest, "node id %d at %q: a node needs a positive id and an address", c.AddNode.ID, c.AddNode.Addr)
		}
		s.Nodes[c.AddNode.ID] = *c.AddNode
		return nil
	case c.RemoveNode != nil:
		id := *c.RemoveNode
		if _, ok := s.Nodes[id]; !ok {
			return errorf(ErrInvalidRequest, "node %d is not in the cluster", id)
		}
		for _, t := range s.Topics {
			for p, pm := range t.Partitions {
				if slices.Contains(pm.Replicas, id) {
					return errorf(ErrInvalidRequest, "node %d still holds a replica of %s/%d; move or delete its partitions first", id, t.Name, p)
				}
			}
		}
		delete(s.Nodes, id)
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
	n := len(s.Nodes)
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
	t := clusterTopic{Name: c.Name, ID: id, Configs: maps.Clone(c.Configs), Partitions: assign(slices.Sorted(maps.Keys(s.Nodes)), id, c.Partitions, c.Replicas)}
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

// clone returns a deep copy, for readers outside the FSM.
func (s *clusterState) clone() *clusterState {
	var out clusterState
	if err := json.Unmarshal(mustJSON(s), &out); err != nil {
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
