package client

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// Cluster is what Metadata returns: the nodes, the controller and the
// topics of a cluster.
type Cluster struct {
	Nodes []Node
	// Controller is the id of the node leading the controller group, 0 when
	// none.
	Controller int32
	Topics     []TopicInfo
}

// Node is one broker node.
type Node struct {
	ID int32
	// Addr is the gRPC address clients dial.
	Addr string
	// HTTP is the address of /metrics, /livez and /readyz, "" when not served.
	HTTP string
}

// TopicInfo describes a topic.
type TopicInfo struct {
	Name       string
	Partitions []PartitionInfo
	// Configs are the topic's effective configs.
	Configs map[string]string
}

// PartitionInfo describes one partition of a topic.
type PartitionInfo struct {
	Partition int32
	// Leader is the id of the leading node, 0 when there is none.
	Leader int32
	// Replicas are the ids of the nodes holding the partition.
	Replicas []int32
	// StartOffset is the first offset still in the log; EndOffset the
	// offset the next record will get (the high watermark).
	StartOffset int64
	EndOffset   int64
}

func topicInfo(t *runnelpb.TopicInfo) TopicInfo {
	out := TopicInfo{Name: t.GetName(), Configs: t.GetConfigs()}
	for _, p := range t.GetPartitions() {
		out.Partitions = append(out.Partitions, PartitionInfo{
			Partition:   p.GetPartition(),
			Leader:      p.GetLeader(),
			Replicas:    p.GetReplicas(),
			StartOffset: p.GetStartOffset(),
			EndOffset:   p.GetEndOffset(),
		})
	}
	slices.SortFunc(out.Partitions, func(a, b PartitionInfo) int { return int(a.Partition - b.Partition) })
	if out.Configs == nil {
		out.Configs = map[string]string{}
	}
	return out
}

// Metadata returns the cluster's nodes and all its topics, fresh from a
// broker. It also refreshes the client's cached view.
func (c *Client) Metadata(ctx context.Context) (Cluster, error) {
	resp, err := c.meta.fetch(ctx, nil)
	if err != nil {
		return Cluster{}, err
	}
	out := Cluster{Controller: resp.GetController()}
	for _, n := range resp.GetNodes() {
		out.Nodes = append(out.Nodes, Node{ID: n.GetId(), Addr: n.GetAddr(), HTTP: n.GetHttp()})
	}
	for _, t := range resp.GetTopics() {
		out.Topics = append(out.Topics, topicInfo(t))
	}
	return out, nil
}

// metadata caches partition counts, leaders and replicas for routing, and
// which brokers could not be reached lately.
type metadata struct {
	c       *Client
	trigger chan struct{}

	mu     sync.RWMutex
	nodes  map[int32]string
	topics map[string][]partMeta
	// down holds brokers that could not be reached, and until when they
	// are avoided.
	down map[string]time.Time
}

// partMeta is what the cache knows of one partition.
type partMeta struct {
	leader   int32
	replicas []int32
}

// topicPartition names one partition.
type topicPartition struct {
	topic     string
	partition int32
}

// unreachableFor is how long a broker that could not be reached is avoided
// as a partition leader: as long as gRPC waits before it dials it again.
const unreachableFor = time.Second

func (m *metadata) init(c *Client) {
	m.c = c
	m.trigger = make(chan struct{}, 1)
	m.nodes = make(map[int32]string)
	m.topics = make(map[string][]partMeta)
	m.down = make(map[string]time.Time)
}

// brokerAddrs returns the addresses to try for calls that any broker can
// answer: the configured ones first, then the nodes learnt since.
func (m *metadata) brokerAddrs() []string {
	out := slices.Clone(m.c.cfg.brokers)
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, a := range m.nodes {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// fetch asks a broker for metadata of topics (all when nil) and merges the
// answer into the cache. With all topics, topics missing from the answer
// are dropped from the cache.
func (m *metadata) fetch(ctx context.Context, topics []string) (*runnelpb.MetadataResponse, error) {
	var resp *runnelpb.MetadataResponse
	err := m.c.call(ctx, "", func(ctx context.Context, b runnelpb.BrokerClient) error {
		var err error
		resp, err = b.Metadata(ctx, &runnelpb.MetadataRequest{Topics: topics})
		return err
	})
	if err != nil {
		return nil, err
	}
	m.merge(resp, topics == nil)
	return resp, nil
}

// merge puts a metadata answer into the cache and returns the partitions
// whose leader changed; with all, topics missing from it are dropped.
func (m *metadata) merge(resp *runnelpb.MetadataResponse, all bool) []topicPartition {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range resp.GetNodes() {
		addr := n.GetAddr()
		if addr == "" {
			addr = m.c.cfg.brokers[0]
		}
		m.nodes[n.GetId()] = addr
	}
	var changed []topicPartition
	now := time.Now()
	seen := make(map[string]bool, len(resp.GetTopics()))
	for _, t := range resp.GetTopics() {
		old := m.topics[t.GetName()]
		parts := make([]partMeta, len(t.GetPartitions()))
		for _, p := range t.GetPartitions() {
			i := int(p.GetPartition())
			if i < 0 || i >= len(parts) {
				continue
			}
			parts[i] = partMeta{leader: p.GetLeader(), replicas: p.GetReplicas()}
			if i >= len(old) || old[i].leader == parts[i].leader {
				continue
			}
			// The metadata learns leaders from the controller, after raft
			// elected them; a leader named by a replica may be newer. Keep it
			// when the one the metadata names cannot be reached.
			if m.downLocked(m.nodes[parts[i].leader], now) && !m.downLocked(m.nodes[old[i].leader], now) && old[i].leader != 0 {
				parts[i].leader = old[i].leader
				continue
			}
			changed = append(changed, topicPartition{t.GetName(), int32(i)})
		}
		m.topics[t.GetName()] = parts
		seen[t.GetName()] = true
	}
	if all {
		for t := range m.topics {
			if !seen[t] {
				delete(m.topics, t)
			}
		}
	}
	return changed
}

// partitions returns the partition count of topic, asking a broker when the
// topic is not cached.
func (m *metadata) partitions(ctx context.Context, topic string) (int, error) {
	m.mu.RLock()
	parts, ok := m.topics[topic]
	m.mu.RUnlock()
	if ok {
		return len(parts), nil
	}
	if _, err := m.fetch(ctx, []string{topic}); err != nil {
		return 0, err
	}
	m.mu.RLock()
	parts, ok = m.topics[topic]
	m.mu.RUnlock()
	if !ok {
		return 0, topicNotFound(topic)
	}
	return len(parts), nil
}

// topicNotFound is the error for a topic missing from a metadata answer;
// it reads as the broker's own.
func topicNotFound(topic string) error {
	return &Error{
		Kind:     ErrNotFound,
		Reason:   "TOPIC_NOT_FOUND",
		Message:  fmt.Sprintf("topic %q not found; create it with: runnel topic create %s", topic, topic),
		Metadata: map[string]string{"topic": topic},
	}
}

// leader returns the address to send requests for topic/partition to: its
// leader's, from the cache. When the leader could not be reached lately, it
// is another replica's, which answers with the leader it knows (raft's view,
// fresher than the cached one) or that there is none yet. It fails with
// ErrNotFound when the cache has no such partition and with ErrUnavailable
// when it has no leader for it.
func (m *metadata) leader(topic string, partition int32) (string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	parts, ok := m.topics[topic]
	if !ok {
		return "", topicNotFound(topic)
	}
	if partition < 0 || int(partition) >= len(parts) {
		return "", &Error{
			Kind:     ErrNotFound,
			Reason:   "PARTITION_NOT_FOUND",
			Message:  fmt.Sprintf("partition %d of topic %q not found; it has %d partitions", partition, topic, len(parts)),
			Metadata: map[string]string{"topic": topic, "partition": fmt.Sprint(partition), "partitions": fmt.Sprint(len(parts))},
		}
	}
	pm := parts[partition]
	addr, ok := m.nodes[pm.leader]
	if !ok {
		return "", &Error{
			Kind:    ErrUnavailable,
			Reason:  "NO_LEADER",
			Message: fmt.Sprintf("no leader known for %s/%d yet", topic, partition),
		}
	}
	now := time.Now()
	if !m.downLocked(addr, now) {
		return addr, nil
	}
	// The first replica that can be reached, the same each time, so the
	// retry goes where retryOrFail expects it to.
	for _, r := range pm.replicas {
		if a, ok := m.nodes[r]; ok && a != addr && !m.downLocked(a, now) {
			return a, nil
		}
	}
	return addr, nil
}

// downLocked reports whether addr could not be reached lately.
func (m *metadata) downLocked(addr string, now time.Time) bool {
	until, ok := m.down[addr]
	return ok && now.Before(until)
}

// unreachable notes that the broker at addr could not be reached.
func (m *metadata) unreachable(addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.down[addr] = time.Now().Add(unreachableFor)
}

// reachable notes that the broker at addr answered.
func (m *metadata) reachable(addr string) {
	m.mu.RLock()
	_, ok := m.down[addr]
	m.mu.RUnlock()
	if ok {
		m.mu.Lock()
		delete(m.down, addr)
		m.mu.Unlock()
	}
}

// leaderFresh is leader, fetching the topic's metadata first when the cache
// does not know the leader.
func (m *metadata) leaderFresh(ctx context.Context, topic string, partition int32) (string, error) {
	addr, err := m.leader(topic, partition)
	if err == nil {
		return addr, nil
	}
	if _, err := m.fetch(ctx, []string{topic}); err != nil {
		return "", err
	}
	return m.leader(topic, partition)
}

// follow records a leader hint from a NOT_LEADER answer and reports
// whether it named another leader than the cached one.
func (m *metadata) follow(topic string, partition int32, nl *NotLeaderError) bool {
	if nl.LeaderID == 0 {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if nl.LeaderAddr != "" {
		m.nodes[nl.LeaderID] = nl.LeaderAddr
	}
	parts, ok := m.topics[topic]
	if !ok || partition < 0 || int(partition) >= len(parts) || parts[partition].leader == nl.LeaderID {
		return false
	}
	parts[partition].leader = nl.LeaderID
	return true
}

// refresh asks the metadata loop for a refresh soon; it does not block.
func (m *metadata) refresh() {
	select {
	case m.trigger <- struct{}{}:
	default:
	}
}

// loop refreshes the cache when asked, at most once per minimum backoff,
// and every MetadataMaxAge while it knows topics; after each refresh it lets
// the producer route the partitions that were waiting for a leader. A
// refresh that was asked for always runs: partitions parked because the
// cache lost their topic wait for it.
func (m *metadata) loop() {
	tick := time.NewTicker(m.c.cfg.metadataMaxAge)
	defer tick.Stop()
	for {
		asked := false
		select {
		case <-m.c.ctx.Done():
			return
		case <-m.trigger:
			asked = true
		case <-tick.C:
		}
		m.mu.RLock()
		known := len(m.topics)
		m.mu.RUnlock()
		if asked || known > 0 {
			changed, err := m.refreshOnce()
			if err != nil {
				m.c.cfg.logger.Warn("runnel client: metadata refresh failed", "err", err)
			}
			for _, tp := range changed {
				m.c.cfg.logger.Debug("runnel client: partition leader changed", "topic", tp.topic, "partition", tp.partition)
			}
			m.c.prod.rerouteAll(changed)
		}
		if m.c.sleep(m.c.ctx, m.c.cfg.backoffMin) != nil {
			return
		}
	}
}

// refreshOnce fetches the metadata of all topics, asking each broker once,
// and returns the partitions whose leader changed.
func (m *metadata) refreshOnce() ([]topicPartition, error) {
	ctx, cancel := context.WithTimeout(m.c.ctx, m.c.cfg.requestTimeout)
	defer cancel()
	var resp *runnelpb.MetadataResponse
	_, err := m.c.callOnce(ctx, "", func(ctx context.Context, b runnelpb.BrokerClient) error {
		var err error
		resp, err = b.Metadata(ctx, &runnelpb.MetadataRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	return m.merge(resp, true), nil
}

// cachedPartitions returns the cached partition count of topic.
func (m *metadata) cachedPartitions(topic string) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	parts, ok := m.topics[topic]
	if !ok {
		return 0, topicNotFound(topic)
	}
	return len(parts), nil
}
