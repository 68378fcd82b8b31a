package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"sync"

	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/partition"
	"github.com/runnel-dev/runnel/record"
)

// maxPartitions bounds the partitions of one topic.
const maxPartitions = 10000

// validName reports whether name has 1 to 249 of the characters a-z A-Z
// 0-9 . _ - (a loop: a regexp cost every commit and produce a tenth of the
// coordinator's CPU).
func validName(name string) bool {
	if len(name) < 1 || len(name) > 249 {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

func validateTopicName(name string) error {
	if !validName(name) || name == "." || name == ".." {
		return errorf(ErrInvalidTopicName, "invalid topic name %q; use 1 to 249 of the characters a-z A-Z 0-9 . _ -", name)
	}
	return nil
}

// topicMeta is what the registry persists for a topic.
type topicMeta struct {
	Name       string            `json:"name"`
	ID         uint32            `json:"id"`
	Partitions int               `json:"partitions"`
	Replicas   int               `json:"replicas"`
	Configs    map[string]string `json:"configs,omitempty"`
}

// topic is a live topic as this node sees it: its metadata, its effective
// config and, per partition, the replicas, the leader and the local replica.
type topic struct {
	meta   topicMeta
	cfg    topicConfig
	assign []partitionMeta
	// parts[p] is this node's replica of partition p, nil when it hosts none.
	parts []replica
}

// replica is what the broker needs of a partition it hosts, replicated or
// not. Append orders a batch and returns a Pending whose Wait must be called
// exactly once.
type replica interface {
	Append(b record.Batch, acks partition.Acks) (partition.Pending, error)
	Read(from int64, maxBytes int) ([]record.Batch, error)
	Start() int64
	End() int64
	Wait() <-chan struct{}
	OffsetForTime(ms int64) (int64, error)
}

// catalog is where the broker finds and changes topics: the topic registry
// on a single node, the controller in a cluster.
type catalog interface {
	get(name string) (*topic, error)
	// partition returns the topic and the local replica of partition p, or
	// an error such as *PartitionNotFoundError or a not-leader error naming
	// where the partition lives. In a cluster only the leader's replica is
	// returned: reads and writes alike go to the leader.
	partition(name string, p int32) (*topic, replica, error)
	list() []*topic
	create(ctx context.Context, name string, partitions, replicas int, configs map[string]string) (*topic, error)
	delete(ctx context.Context, name string) error
	alter(ctx context.Context, name string, set map[string]string, del []string) (*topic, error)
	// nodes returns the cluster's nodes and the controller leader's id.
	nodes() ([]nodeMeta, int32)
}

var _ catalog = (*registry)(nil)

// registry holds the topics of a single node and persists their metadata
// in one JSON file, replaced atomically on every change.
type registry struct {
	nodeID     int32
	self       nodeMeta
	path       string // "" keeps the registry in memory only
	store      *log.Store
	maxPending int64

	mu     sync.RWMutex
	topics map[string]*topic
	nextID uint32
}

type registryFile struct {
	NextID uint32      `json:"next_id"`
	Topics []topicMeta `json:"topics"`
}

func openRegistry(nodeID int32, path string, store *log.Store, maxPending int64) (*registry, error) {
	r := &registry{nodeID: nodeID, path: path, store: store, maxPending: maxPending, topics: map[string]*topic{}, nextID: 1}
	if path == "" {
		return r, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read topic registry: %w", err)
	}
	var f registryFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("parse topic registry %s: %w", path, err)
	}
	r.nextID = max(f.NextID, 1)
	live := map[uint32]bool{}
	for _, m := range f.Topics {
		t, err := r.openTopic(m)
		if err != nil {
			return nil, err
		}
		r.topics[m.Name] = t
		live[m.ID] = true
	}
	// A crash between removing a topic from the registry and dropping its
	// data leaves logs no topic names; drop them now.
	ids, err := store.IDs()
	if err != nil {
		return nil, fmt.Errorf("list logs: %w", err)
	}
	for _, id := range ids {
		if !live[id.Topic] {
			if err := store.Drop(id); err != nil {
				return nil, fmt.Errorf("drop log %s of a deleted topic: %w", id, err)
			}
		}
	}
	return r, nil
}

func (r *registry) openTopic(m topicMeta) (*topic, error) {
	cfg, err := validateConfigs(m.Configs)
	if err != nil {
		return nil, fmt.Errorf("topic %q: %w", m.Name, err)
	}
	t := &topic{meta: m, cfg: cfg}
	for i := range m.Partitions {
		t.assign = append(t.assign, partitionMeta{Replicas: []int32{r.nodeID}, Leader: r.nodeID})
		l, err := r.store.Log(log.ID{Topic: m.ID, Partition: uint32(i)})
		if err != nil {
			return nil, fmt.Errorf("open %s/%d: %w", m.Name, i, err)
		}
		l.SetRetention(cfg.retention())
		t.parts = append(t.parts, partition.New(l, partition.Options{MaxPendingBytes: r.maxPending}))
	}
	return t, nil
}

// saveLocked writes the registry file: a temporary file, fsync, rename,
// fsync of the folder.
func (r *registry) saveLocked() error {
	if r.path == "" {
		return nil
	}
	f := registryFile{NextID: r.nextID}
	for _, name := range slices.Sorted(maps.Keys(r.topics)) {
		f.Topics = append(f.Topics, r.topics[name].meta)
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(r.path, data, true); err != nil {
		return fmt.Errorf("write topic registry %s: %w", r.path, err)
	}
	return nil
}

func (r *registry) create(_ context.Context, name string, partitions, replicas int, configs map[string]string) (*topic, error) {
	if err := validateTopicName(name); err != nil {
		return nil, err
	}
	if partitions < 1 || partitions > maxPartitions {
		return nil, errorf(ErrInvalidPartitions, "invalid partition count %d; a topic has 1 to %d partitions", partitions, maxPartitions)
	}
	if replicas == 0 {
		replicas = 1
	}
	if replicas != 1 {
		return nil, errorf(ErrInvalidConfig, "replication factor %d; this node runs alone, so a topic has 1 replica", replicas)
	}
	if _, err := validateConfigs(configs); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.topics[name]; ok {
		return nil, errorf(ErrTopicExists, "topic %q already exists; see it with: runnel topic describe %s", name, name)
	}
	m := topicMeta{Name: name, ID: r.nextID, Partitions: partitions, Replicas: replicas, Configs: maps.Clone(configs)}
	t, err := r.openTopic(m)
	if err != nil {
		return nil, err
	}
	r.nextID++
	r.topics[name] = t
	if err := r.saveLocked(); err != nil {
		delete(r.topics, name)
		r.nextID--
		return nil, err
	}
	return t, nil
}

func (r *registry) delete(_ context.Context, name string) error {
	r.mu.Lock()
	t, ok := r.topics[name]
	if !ok {
		r.mu.Unlock()
		return &TopicNotFoundError{Topic: name}
	}
	delete(r.topics, name)
	if err := r.saveLocked(); err != nil {
		r.topics[name] = t
		r.mu.Unlock()
		return err
	}
	r.mu.Unlock()
	// The registry no longer names the topic, so its data is unreachable;
	// drop it. Ids are never reused, so a crash here leaves only garbage.
	var errs []error
	for i := range t.parts {
		errs = append(errs, r.store.Drop(log.ID{Topic: t.meta.ID, Partition: uint32(i)}))
	}
	return errors.Join(errs...)
}

func (r *registry) alter(_ context.Context, name string, set map[string]string, del []string) (*topic, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.topics[name]
	if !ok {
		return nil, &TopicNotFoundError{Topic: name}
	}
	configs := maps.Clone(t.meta.Configs)
	if configs == nil {
		configs = map[string]string{}
	}
	for _, k := range del {
		if _, ok := configSpecs[k]; !ok {
			return nil, errorf(ErrInvalidConfig, "unknown config %q", k)
		}
		delete(configs, k)
	}
	maps.Copy(configs, set)
	cfg, err := validateConfigs(configs)
	if err != nil {
		return nil, err
	}
	old := *t
	nt := &topic{meta: t.meta, cfg: cfg, assign: t.assign, parts: t.parts}
	nt.meta.Configs = configs
	r.topics[name] = nt
	if err := r.saveLocked(); err != nil {
		r.topics[name] = &old
		return nil, err
	}
	for _, p := range nt.parts {
		p.(*partition.Partition).Log().SetRetention(cfg.retention())
	}
	return nt, nil
}

func (r *registry) get(name string) (*topic, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t, ok := r.topics[name]
	if !ok {
		return nil, &TopicNotFoundError{Topic: name}
	}
	return t, nil
}

func (r *registry) partition(name string, p int32) (*topic, replica, error) {
	t, err := r.get(name)
	if err != nil {
		return nil, nil, err
	}
	if p < 0 || int(p) >= len(t.parts) {
		return nil, nil, &PartitionNotFoundError{Topic: name, Partition: p, Partitions: len(t.parts)}
	}
	return t, t.parts[p], nil
}

func (r *registry) list() []*topic {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*topic, 0, len(r.topics))
	for _, name := range slices.Sorted(maps.Keys(r.topics)) {
		out = append(out, r.topics[name])
	}
	return out
}

// selfNode describes this node; set by the broker once it listens.
func (r *registry) nodes() ([]nodeMeta, int32) {
	self := r.self
	if self.Addr == "" {
		self.Addr = "inprocess"
	}
	return []nodeMeta{self}, r.nodeID
}
