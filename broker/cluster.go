package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/runnel-dev/runnel/internal/raftmux"
	"github.com/runnel-dev/runnel/internal/raftstore"
	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// defaultReplicas is the replication factor of a topic created without one,
// capped at the number of nodes.
const defaultReplicas = 3

// clusterNode is the part of a Broker that exists only in a cluster: the
// raft plumbing shared by every group on this node, the controller member,
// and connections to the other nodes.
type clusterNode struct {
	b     *Broker
	self  nodeMeta
	mux   *raftmux.Mux
	split *raftmux.Splitter
	rafts *raftstore.Store
	ctrl  *controller
	logs  *log.Store

	peersMu sync.Mutex
	peers   map[string]*grpc.ClientConn

	catalog *clusterCatalog
	groups  *clusterGroups
	dir     string
	// started is when this node started; caughtUp is set once its copy
	// of the cluster state has applied everything the controller leader
	// had committed when this node first heard from it.
	started  time.Time
	caughtUp atomic.Bool
	// removedBy is the node whose state recorded this one as removed when
	// it last asked (see watchRemoval); 0 when none.
	removedBy atomic.Int32
}

// watchCatchUp sets caughtUp once the controller member has heard from a
// leader (or leads) and applied all that is committed. Until then the node
// answers with ErrCatchingUp rather than from a stale state: after a
// restart, a topic created while the node was down is not "not found".
func (n *clusterNode) watchCatchUp() {
	for {
		r := n.ctrl.raft
		_, leader := r.LeaderWithID()
		heard := r.State() == raft.Leader || r.LastContact().After(n.started)
		if leader != "" && heard && r.CommitIndex() > 0 && r.AppliedIndex() >= r.CommitIndex() {
			n.caughtUp.Store(true)
			n.b.logger.Info("caught up with the controller", "node", n.self.ID, "index", r.AppliedIndex())
			return
		}
		select {
		case <-n.b.closing:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// watchRemoval finds out whether the cluster removed this node without
// this node hearing of it: removed while it was down, or stopped before
// its removal reached it. Such a node never hears from a controller leader
// again. Every removalCheckInterval while its controller member knows no
// leader, it asks the other nodes; once one records this node as removed
// (removedAccordingTo), ready says so, until a controller leader is heard
// from again.
func (n *clusterNode) watchRemoval() {
	for {
		select {
		case <-n.b.closing:
			return
		case <-time.After(removalCheckInterval):
		}
		if _, leader := n.ctrl.raft.LeaderWithID(); leader != "" {
			n.removedBy.Store(0)
			continue
		}
		if n.removedBy.Load() != 0 {
			continue
		}
		if by := n.removedAccordingTo(); by != 0 {
			n.removedBy.Store(by)
			n.b.logger.Error("this node was removed from the cluster and serves nothing: stop it and delete its data folder; to bring it back, start it with an empty data folder and run runnel cluster add", "node", n.self.ID, "according_to_node", by)
		}
	}
}

// removalCheckInterval is how often a node whose controller member knows no
// leader asks the others whether it was removed. Tests lower it.
var removalCheckInterval = 5 * time.Second

// removedAccordingTo returns the id of another node that knows a controller
// leader and whose state records this node as removed, or 0 when none
// answers so.
func (n *clusterNode) removedAccordingTo() int32 {
	st, _ := n.ctrl.fsm.view()
	peers := map[int32]string{}
	for id, nm := range st.Nodes {
		peers[id] = nm.Addr
	}
	// After a restart the state is that of the last snapshot until a
	// leader is heard from: the addresses of --cluster fill the gaps.
	for id, addr := range n.b.opts.Cluster {
		if _, ok := peers[id]; !ok {
			peers[id] = addr
		}
	}
	for _, id := range slices.Sorted(maps.Keys(peers)) {
		if id == n.self.ID {
			continue
		}
		info, err := n.askClusterInfo(peers[id], 2*time.Second)
		if err == nil && info.Node == id && info.Controller != 0 && slices.Contains(info.Removed, n.self.ID) {
			return id
		}
	}
	return 0
}

// ready reports whether the node serves from an up-to-date cluster state.
func (n *clusterNode) ready() error {
	if by := n.removedBy.Load(); by != 0 {
		return errorf(ErrCatchingUp, "node %d was removed from the cluster (node %d says so) and serves nothing: stop it and delete its data folder", n.self.ID, by)
	}
	if !n.caughtUp.Load() {
		return errorf(ErrCatchingUp, "node %d is catching up with the cluster state; retry shortly", n.self.ID)
	}
	return nil
}

// propose hands cmd to the controller leader, here or on another node, and
// waits until this node's copy of the cluster state includes it. It retries
// while there is no leader, until ctx ends.
func (n *clusterNode) propose(ctx context.Context, cmd command) error {
	backoff := 20 * time.Millisecond
	for {
		index, err := n.proposeOnce(ctx, cmd)
		if err == nil {
			return n.ctrl.waitApplied(ctx, index)
		}
		if !errors.Is(err, ErrNoLeader) && status.Code(err) != codes.Unavailable {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: controller: %v", ErrNoLeader, err)
		case <-n.b.closing:
			return ErrShuttingDown
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

func (n *clusterNode) proposeOnce(ctx context.Context, cmd command) (uint64, error) {
	if n.ctrl.raft.State() == raft.Leader {
		return n.ctrl.applyLocal(ctx, cmd)
	}
	id, addr := n.ctrl.leader()
	if addr == "" || id == n.self.ID {
		return 0, errorf(ErrNoLeader, "the controller has no leader yet")
	}
	conn, err := n.peer(addr)
	if err != nil {
		return 0, err
	}
	resp, err := runnelpb.NewBrokerClient(conn).Propose(ctx, &runnelpb.ProposeRequest{Command: cmd.encode()})
	if err != nil {
		return 0, err // a status: its code and details reach the caller unchanged
	}
	return resp.Index, nil
}

// askClusterInfo asks the node at addr for its view of the cluster
// (ClusterInfo), waiting at most timeout.
func (n *clusterNode) askClusterInfo(addr string, timeout time.Duration) (*runnelpb.ClusterInfoResponse, error) {
	conn, err := n.peer(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return runnelpb.NewBrokerClient(conn).ClusterInfo(ctx, &runnelpb.ClusterInfoRequest{})
}

// peer returns a connection to another node.
func (n *clusterNode) peer(addr string) (*grpc.ClientConn, error) {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	if n.peers == nil {
		return nil, errorf(ErrShuttingDown, "node %d is shutting down", n.self.ID)
	}
	if c, ok := n.peers[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("connect to node at %s: %w", addr, err)
	}
	n.peers[addr] = c
	return c, nil
}

// register adds this node to the cluster state (with its HTTP address),
// retrying until the controller has a leader or the broker closes. While
// the controller refuses it, because the cluster removed this node, it
// tries again every 5s: an operator may add the node back.
func (n *clusterNode) register() {
	refused := false
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := n.propose(ctx, command{RegisterNode: &n.self})
		cancel()
		if err == nil {
			n.b.logger.Info("node registered with the controller", "node", n.self.ID)
			return
		}
		wait := 200 * time.Millisecond
		if errors.Is(err, ErrInvalidRequest) || status.Code(err) == codes.InvalidArgument {
			if !refused {
				n.b.logger.Warn("the controller refuses this node's registration; trying again every 5s, as runnel cluster add may be bringing it back", "node", n.self.ID, "err", err)
				refused = true
			}
			wait = 5 * time.Second
		}
		select {
		case <-n.b.closing:
			return
		case <-time.After(wait):
		}
	}
}

func (n *clusterNode) close() error {
	var errs []error
	errs = append(errs, n.catalog.closeAll(), n.ctrl.close())
	n.peersMu.Lock()
	for _, c := range n.peers {
		c.Close()
	}
	n.peers = nil
	n.peersMu.Unlock()
	errs = append(errs, n.mux.Close(), n.split.Close(), n.rafts.Close())
	return errors.Join(errs...)
}

// clusterCatalog is the catalog of a cluster node: topics come from the
// controller's replicated state; changes go through the controller leader.
type clusterCatalog struct {
	n *clusterNode
	// hosted holds this node's replicas, keyed by topic id and partition.
	mu     sync.Mutex
	hosted map[log.ID]replica
	// dropping holds the replicas being stopped and deleted, by group,
	// once they are out of hosted.
	dropping map[log.ID]string
	// kick wakes the reconcile loop (see kickReconcile).
	kick chan struct{}
}

var _ catalog = (*clusterCatalog)(nil)

func (c *clusterCatalog) topicView(ct clusterTopic) *topic {
	cfg, _ := validateConfigs(ct.Configs) // validated before it was committed
	t := &topic{
		meta:   topicMeta{Name: ct.Name, ID: ct.ID, Partitions: len(ct.Partitions), Configs: ct.Configs},
		cfg:    cfg,
		assign: ct.Partitions,
		parts:  make([]replica, len(ct.Partitions)),
	}
	if len(ct.Partitions) > 0 {
		t.meta.Replicas = len(ct.Partitions[0].Replicas)
	}
	c.mu.Lock()
	for p := range ct.Partitions {
		t.parts[p] = c.hosted[log.ID{Topic: ct.ID, Partition: uint32(p)}]
	}
	c.mu.Unlock()
	return t
}

func (c *clusterCatalog) get(name string) (*topic, error) {
	if err := c.n.ready(); err != nil {
		return nil, err
	}
	st, _ := c.n.ctrl.fsm.view()
	ct, ok := st.Topics[name]
	if !ok {
		return nil, &TopicNotFoundError{Topic: name}
	}
	return c.topicView(ct), nil
}

func (c *clusterCatalog) list() []*topic {
	st, _ := c.n.ctrl.fsm.view()
	out := make([]*topic, 0, len(st.Topics))
	for _, name := range slices.Sorted(maps.Keys(st.Topics)) {
		out = append(out, c.topicView(st.Topics[name]))
	}
	return out
}

func (c *clusterCatalog) partition(name string, p int32) (*topic, replica, error) {
	if err := c.n.ready(); err != nil {
		return nil, nil, err
	}
	st, _ := c.n.ctrl.fsm.view()
	ct, ok := st.Topics[name]
	if !ok {
		return nil, nil, &TopicNotFoundError{Topic: name}
	}
	if p < 0 || int(p) >= len(ct.Partitions) {
		return nil, nil, &PartitionNotFoundError{Topic: name, Partition: p, Partitions: len(ct.Partitions)}
	}
	t := c.topicView(ct)
	if r := t.parts[p]; r != nil {
		// Only the leader's copy is current: a follower's trails it by up
		// to a commit timeout, so a read served here could miss records
		// the leader has acknowledged. The client follows the hint.
		if err := r.(*hostedReplica).checkLeader(name, p); err != nil {
			return nil, nil, err
		}
		return t, r, nil
	}
	leader := ct.Partitions[p].Leader
	if node, ok := st.Nodes[leader]; ok && leader != 0 {
		return nil, nil, &NotLeaderError{Topic: name, Partition: p, LeaderID: leader, LeaderAddr: node.Addr}
	}
	return nil, nil, errorf(ErrNoLeader, "%s/%d has no leader yet; retry shortly", name, p)
}

func (c *clusterCatalog) create(ctx context.Context, name string, partitions, replicas int, configs map[string]string) (*topic, error) {
	if err := c.n.propose(ctx, command{CreateTopic: &createTopicCmd{Name: name, Partitions: partitions, Replicas: replicas, Configs: configs}}); err != nil {
		return nil, err
	}
	// Answer once every partition is led by its preferred replica, so the
	// caller can produce at once and leaders are spread; after the
	// deadline, answer anyway with what is known.
	wait, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		st, changed := c.n.ctrl.fsm.view()
		ct, ok := st.Topics[name]
		if !ok {
			return nil, &TopicNotFoundError{Topic: name} // deleted meanwhile
		}
		settled := true
		for _, pm := range ct.Partitions {
			settled = settled && pm.Leader == pm.Replicas[0]
		}
		if settled {
			return c.topicView(ct), nil
		}
		select {
		case <-changed:
		case <-wait.Done():
			return c.topicView(ct), nil
		}
	}
}

func (c *clusterCatalog) delete(ctx context.Context, name string) error {
	return c.n.propose(ctx, command{DeleteTopic: &name})
}

func (c *clusterCatalog) alter(ctx context.Context, name string, set map[string]string, del []string) (*topic, error) {
	if err := c.n.propose(ctx, command{AlterConfigs: &alterConfigsCmd{Name: name, Set: set, Delete: del}}); err != nil {
		return nil, err
	}
	return c.get(name)
}

// nodeIDString is a node id as raft spells server ids.
func nodeIDString(id int32) raft.ServerID { return raft.ServerID(strconv.Itoa(int(id))) }

func (c *clusterCatalog) nodes() ([]nodeMeta, int32) {
	st, _ := c.n.ctrl.fsm.view()
	leader, _ := c.n.ctrl.leader()
	out := make([]nodeMeta, 0, len(st.Nodes))
	for _, id := range slices.Sorted(maps.Keys(st.Nodes)) {
		out = append(out, st.Nodes[id])
	}
	return out, leader
}

// toControllerLeader returns a client for the controller leader when it is
// another node (ok), or ok false when this node leads.
func (n *clusterNode) toControllerLeader() (runnelpb.BrokerClient, bool, error) {
	if n.ctrl.raft.State() == raft.Leader {
		return nil, false, nil
	}
	id, addr := n.ctrl.leader()
	if addr == "" || id == n.self.ID {
		return nil, false, errorf(ErrNoLeader, "the controller has no leader yet; retry shortly")
	}
	conn, err := n.peer(addr)
	if err != nil {
		return nil, false, err
	}
	return runnelpb.NewBrokerClient(conn), true, nil
}

// openCluster sets up this node's part of the cluster on b.lis: it splits
// the listener between gRPC and raft, opens the raft store, starts the
// controller member and installs the cluster catalog. It returns the
// listener gRPC serves on.
func (b *Broker) openCluster(dir string) (net.Listener, error) {
	o := b.opts
	self := nodeMeta{ID: o.NodeID, Addr: o.Cluster[o.NodeID], HTTP: o.HTTPAddr}
	n := &clusterNode{b: b, self: self, logs: b.store, dir: dir, started: time.Now(), peers: map[string]*grpc.ClientConn{}}
	n.split = raftmux.Split(b.lis, b.logger)
	var err error
	n.mux, err = raftmux.New(n.split.Raft(), self.Addr, b.logger)
	if err != nil {
		n.split.Close()
		return nil, fmt.Errorf("broker: %w", err)
	}
	n.rafts, err = raftstore.Open(filepath.Join(dir, "raft"), raftstore.Options{FS: b.storeFS(), NoSync: o.NoSync, Logger: b.logger})
	if err != nil {
		n.mux.Close()
		return nil, fmt.Errorf("broker: open raft store: %w", err)
	}
	layer, err := n.mux.Layer(controllerGroup)
	if err != nil {
		n.mux.Close()
		n.rafts.Close()
		return nil, fmt.Errorf("broker: %w", err)
	}
	glog := b.logger.With("group", controllerGroup)
	joining := func() bool { return runningCluster(o.NodeID, o.Cluster) }
	n.ctrl, err = openController(filepath.Join(dir, "controller"), o.NodeID, raftmux.NewTransport(layer, glog), o.Cluster, joining,
		n.rafts.Group(controllerGroup), raftmux.NewLogger(glog), b.logger)
	if err != nil {
		n.mux.Close()
		n.rafts.Close()
		return nil, fmt.Errorf("broker: %w", err)
	}
	n.catalog = &clusterCatalog{n: n, hosted: map[log.ID]replica{}, dropping: map[log.ID]string{}, kick: make(chan struct{}, 1)}
	n.groups = &clusterGroups{n: n}
	b.cluster = n
	b.topics = n.catalog
	return n.split.Apps(), nil
}

// runningCluster reports whether a node of peers other than self already
// has a cluster state: nodes registered with a controller. A node without
// controller state of its own then joins that cluster instead of
// bootstrapping. Nodes of a new cluster, started together, find none and
// all bootstrap the same group. A node that cannot be reached counts as
// having no state; the probe takes at most a few seconds.
func runningCluster(self int32, peers map[int32]string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	found := make(chan bool, len(peers))
	asked := 0
	for id, addr := range peers {
		if id == self {
			continue
		}
		asked++
		go func() {
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				found <- false
				return
			}
			defer conn.Close()
			info, err := runnelpb.NewBrokerClient(conn).ClusterInfo(ctx, &runnelpb.ClusterInfoRequest{})
			found <- err == nil && len(info.Nodes) > 0
		}()
	}
	for range asked {
		if <-found {
			return true
		}
	}
	return false
}

// start runs the node's background work: registering with the controller,
// hosting the partition replicas assigned to this node, and finishing node
// removals when this node leads the controller.
func (n *clusterNode) start() {
	n.b.wg.Add(6)
	go func() {
		defer n.b.wg.Done()
		n.groups.watchGroups()
	}()
	go func() {
		defer n.b.wg.Done()
		n.watchRemoval()
	}()
	go func() {
		defer n.b.wg.Done()
		n.finishRemovals()
	}()
	go func() {
		defer n.b.wg.Done()
		n.watchCatchUp()
	}()
	go func() {
		defer n.b.wg.Done()
		n.register()
	}()
	go func() {
		defer n.b.wg.Done()
		n.catalog.reconcileLoop()
	}()
}
