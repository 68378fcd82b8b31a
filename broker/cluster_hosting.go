package broker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/runnel-dev/runnel/internal/raftmux"
	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/partition"
	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// hostedReplica is a partition replica this node runs, with what is needed
// to stop it again.
type hostedReplica struct {
	*partition.Replica
	topic string
	group string
	stop  chan struct{}
	done  chan struct{}

	// reconf is the goroutine moving the partition's raft group to its
	// assigned replicas while this replica leads, nil when none runs;
	// preferred is the preferred leader last seen. The reconcile loop owns
	// both (and drop and closeAll, which it or Close calls after it ends).
	reconf    *reconfWorker
	preferred int32
}

// checkLeader returns nil while this replica leads its partition's raft
// group, and otherwise the error a request for topic/part gets here: a
// NotLeaderError naming the leader raft knows, or ErrNoLeader when it
// knows none.
func (h *hostedReplica) checkLeader(topic string, part int32) error {
	if h.IsLeader() {
		return nil
	}
	l, _ := h.Leader()
	return notLeader(topic, part, &partition.NotLeaderError{LeaderID: l.ID, LeaderAddr: l.Addr})
}

// checkReadable returns nil when reads may be served from this replica: it
// leads, and has applied every entry committed before it was elected
// (partition.Replica.LeaderReady). Until then a new leader's end offset can
// be behind the one its predecessor acknowledged, and it answers
// ErrNoLeader (retriable).
func (h *hostedReplica) checkReadable(topic string, part int32) error {
	if err := h.checkLeader(topic, part); err != nil {
		return err
	}
	if h.LeaderReady() {
		return nil
	}
	return errorf(ErrNoLeader, "%s/%d has a new leader that has not yet applied all the records committed before its election; retry shortly", topic, part)
}

// groupName is the raft group of a partition. It names the topic by id, so
// a topic deleted and created again under the same name is a new group.
func groupName(id log.ID) string { return fmt.Sprintf("p/%d/%d", id.Topic, id.Partition) }

// reconcileLoop keeps the replicas this node runs in line with the cluster
// state: it starts the replicas assigned to this node, stops and deletes
// those no longer assigned nor in their partition's raft group, applies
// config changes, and moves the raft groups it leads to their assigned
// replicas. It runs again at every state change and every leadership change
// of a replica here.
func (c *clusterCatalog) reconcileLoop() {
	for {
		st, changed := c.n.ctrl.fsm.view()
		retry := c.reconcile(st)
		var again <-chan time.Time
		if retry {
			again = time.After(time.Second)
		}
		select {
		case <-changed:
		case <-c.kick:
		case <-again:
		case <-c.n.b.closing:
			return
		}
	}
}

// kickReconcile makes the reconcile loop run again soon.
func (c *clusterCatalog) kickReconcile() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// reconcile does one pass and reports whether something failed and should
// be tried again.
func (c *clusterCatalog) reconcile(st *clusterState) (retry bool) {
	want := map[log.ID]clusterTopic{}
	for _, t := range st.Topics {
		for p, pm := range t.Partitions {
			if slices.Contains(pm.members(), c.n.self.ID) {
				want[log.ID{Topic: t.ID, Partition: uint32(p)}] = t
			}
		}
	}
	c.mu.Lock()
	var stale []*hostedReplica
	var staleIDs []log.ID
	for id, r := range c.hosted {
		if _, ok := want[id]; !ok {
			h := r.(*hostedReplica)
			stale = append(stale, h)
			staleIDs = append(staleIDs, id)
			delete(c.hosted, id)
			c.dropping[id] = h.topic
		}
	}
	c.mu.Unlock()
	for i, r := range stale {
		if err := dropReplica(c, staleIDs[i], r); err != nil {
			c.n.b.logger.Error("delete partition replica", "group", r.group, "err", err)
		}
		c.mu.Lock()
		delete(c.dropping, staleIDs[i])
		c.mu.Unlock()
	}
	for id, t := range want {
		cfg, _ := validateConfigs(t.Configs)
		c.mu.Lock()
		r, ok := c.hosted[id]
		c.mu.Unlock()
		if ok {
			h := r.(*hostedReplica)
			h.Log().SetRetention(cfg.retention())
			c.steer(st, t, id, h)
			continue
		}
		h, err := c.host(st, t, id)
		if err != nil {
			c.n.b.logger.Error("start partition replica", "topic", t.Name, "partition", id.Partition, "err", err)
			retry = true
			continue
		}
		h.Log().SetRetention(cfg.retention())
		c.mu.Lock()
		c.hosted[id] = h
		c.mu.Unlock()
		c.steer(st, t, id, h)
	}
	return retry
}

// host starts this node's replica of partition id. Only the replicas a
// partition was created with bootstrap its raft group, and only while it
// has never been reassigned: a replica added later starts empty and waits
// for the leader to add it, since a bootstrap with another server list
// would start a second group with the same name.
func (c *clusterCatalog) host(st *clusterState, t clusterTopic, id log.ID) (*hostedReplica, error) {
	n := c.n
	group := groupName(id)
	pm := t.Partitions[id.Partition]
	var boot []partition.Server
	if !pm.Reassigned && slices.Contains(pm.Replicas, n.self.ID) {
		for _, r := range pm.Replicas {
			node, ok := st.Nodes[r]
			if !ok {
				return nil, fmt.Errorf("replica node %d is not in the cluster", r)
			}
			boot = append(boot, partition.Server{ID: strconv.Itoa(int(r)), Addr: node.Addr})
		}
	}
	l, err := n.logs.Log(id)
	if err != nil {
		return nil, err
	}
	layer, err := n.mux.Layer(group)
	if err != nil {
		return nil, err
	}
	glog := n.b.logger.With("group", group, "topic", t.Name, "partition", id.Partition)
	rg := n.rafts.Group(group)
	rep, err := partition.OpenReplica(partition.ReplicaConfig{
		ID:              strconv.Itoa(int(n.self.ID)),
		Log:             l,
		LogStore:        rg,
		StableStore:     rg,
		Transport:       raftmux.NewTransport(layer, glog),
		SnapshotDir:     filepath.Join(n.dir, "snapshots", fmt.Sprintf("%d-%d", id.Topic, id.Partition)),
		Bootstrap:       boot,
		PeerLogEnd:      c.replicaLogEnd(id),
		MaxPendingBytes: n.b.opts.MaxPendingBytes,
		Logger:          glog,
	})
	if err != nil {
		layer.Close()
		return nil, err
	}
	h := &hostedReplica{Replica: rep, topic: t.Name, group: group, stop: make(chan struct{}), done: make(chan struct{})}
	go c.watchLeader(h, t, id)
	return h, nil
}

// watchLeader reports this replica's leadership to the controller, and
// hands leadership to the preferred replica (the first in the assignment)
// when it leads in its place, so leaders spread over the nodes.
func (c *clusterCatalog) watchLeader(h *hostedReplica, t clusterTopic, id log.ID) {
	defer close(h.done)
	// ctx ends when the replica or the node stops, so that a report the
	// controller cannot take (it has lost its majority, as when the nodes
	// of a cluster stop one after another) does not hold up either.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-h.stop:
		case <-c.n.b.closing:
		case <-ctx.Done():
		}
		cancel()
	}()
	for first := true; ; first = false {
		changed := h.LeaderChanged()
		if !first {
			c.n.b.met.leaderChanges.WithLabelValues(t.Name).Inc()
			c.kickReconcile() // a new leader moves the group if it must
		}
		if h.IsLeader() {
			if !c.reportLeader(ctx, h, t, id, h.Stats().Term, changed) {
				return
			}
			state, _ := c.n.ctrl.fsm.view()
			if preferred, moving := preferredOf(state, t.Name, id); preferred != c.n.self.ID && !moving {
				// Not waited for: raft can leave a transfer's future
				// unresolved when the group shuts down meanwhile, and the
				// watcher must still see the stop. While the group moves,
				// its leader hands over when the move is done.
				go c.transferToPreferred(h, id, preferred)
			}
		}
		select {
		case <-changed:
		case <-h.stop:
			return
		case <-c.n.b.closing:
			return
		}
	}
}

// reportLeaderRetry is how long reportLeader waits before it proposes
// again, and reportLeaderTimeout how long one proposal may take.
const reportLeaderRetry = 500 * time.Millisecond

// Tests replace these.
var (
	reportLeaderTimeout = 10 * time.Second
	// proposeLeader makes reportLeader's proposals.
	proposeLeader = (*clusterNode).propose
)

// reportLeader proposes to the controller that this node leads partition id
// in term, until the controller's state records it, and returns true; it
// returns false when the replica or the node stops first (ctx ends then,
// and with it a proposal under way). Clients find a
// partition's leader in that state, and a follower sends them on with a
// hint, but a stopped node cannot: a report lost when the controller's
// leader stops under it (it answers ErrShuttingDown) would leave clients
// sent to a node that is gone. It gives up early, returning true, when the
// leadership changes meanwhile (changed), since the watcher then reports
// afresh.
func (c *clusterCatalog) reportLeader(ctx context.Context, h *hostedReplica, t clusterTopic, id log.ID, term uint64, changed <-chan struct{}) bool {
	for attempt := 0; ; attempt++ {
		st, _ := c.n.ctrl.fsm.view()
		if ct, ok := st.Topics[t.Name]; !ok || ct.ID != id.Topic || int(id.Partition) >= len(ct.Partitions) {
			return true // the topic went away
		} else if pm := ct.Partitions[id.Partition]; pm.LeaderTerm > term || (pm.LeaderTerm == term && pm.Leader == c.n.self.ID) {
			return true
		}
		pctx, cancel := context.WithTimeout(ctx, reportLeaderTimeout)
		err := proposeLeader(c.n, pctx, command{LeaderChange: &leaderChangeCmd{Topic: t.Name, TopicID: t.ID, Partition: int(id.Partition), Leader: c.n.self.ID, Term: term}})
		cancel()
		if err != nil && !errors.Is(err, ErrShuttingDown) && ctx.Err() == nil && attempt == 0 {
			c.n.b.logger.Warn("report partition leader; retrying", "group", h.group, "err", err)
		}
		if err == nil {
			return true
		}
		select {
		case <-changed:
			return true
		case <-h.stop:
			return false
		case <-c.n.b.closing:
			return false
		case <-time.After(reportLeaderRetry):
		}
	}
}

// preferredOf returns the preferred leader of partition id of topic in
// st, and whether the partition's raft group is moving; 0 when the topic is
// gone.
func preferredOf(st *clusterState, topic string, id log.ID) (int32, bool) {
	ct, ok := st.Topics[topic]
	if !ok || ct.ID != id.Topic {
		return 0, false
	}
	pm := ct.Partitions[id.Partition]
	return pm.Replicas[0], pm.moving()
}

// preferredServer returns node preferred as a raft server of partition id
// of topic, if the state still names it the partition's preferred leader.
func (c *clusterCatalog) preferredServer(topic string, id log.ID, preferred int32) (partition.Server, bool) {
	st, _ := c.n.ctrl.fsm.view()
	if now, _ := preferredOf(st, topic, id); now != preferred {
		return partition.Server{}, false
	}
	node, ok := st.Nodes[preferred]
	if !ok {
		return partition.Server{}, false
	}
	return partition.Server{ID: strconv.Itoa(int(preferred)), Addr: node.Addr}, true
}

// transferToPreferred hands leadership to the preferred replica once it
// answers and has applied the log up to about where the leader has
// committed. Right after a failover the preferred replica is often the
// node that just died: raft refuses writes during a transfer, so handing
// over to a node that cannot take it would stall the partition for an
// election timeout. It checks again every second while this replica leads,
// and gives up once the state names another preferred replica (a
// reassignment, a node's removal): the change that named it starts a
// transfer of its own (steer, reconfigure), or leaves leadership here when
// it names this node.
func (c *clusterCatalog) transferToPreferred(h *hostedReplica, id log.ID, preferred int32) {
	// Entries a caught-up follower may still be behind by: its commit
	// index trails the leader's by one heartbeat.
	const slack = 256
	applied := c.replicaApplied(id)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-c.n.b.closing:
			return
		default:
		}
		if !h.IsLeader() {
			return
		}
		server, ok := c.preferredServer(h.topic, id, preferred)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		at, err := applied(ctx, server)
		cancel()
		if commit := h.Stats().CommitIndex; err == nil && at+slack >= commit {
			// The state can have moved on while the replica answered.
			if _, ok := c.preferredServer(h.topic, id, preferred); !ok {
				return
			}
			if err := h.TransferLeadershipTo(server); err != nil {
				c.n.b.logger.Debug("hand partition leadership to the preferred replica", "group", h.group, "to", preferred, "err", err)
			}
			return
		}
		select {
		case <-tick.C:
		case <-h.stop:
			return
		case <-c.n.b.closing:
			return
		}
	}
}

// dropReplica is how reconcile drops a replica: drop; tests replace it.
var dropReplica = (*clusterCatalog).drop

// drop stops a replica no longer assigned here, nor in its partition's
// raft group, and deletes its data.
func (c *clusterCatalog) drop(id log.ID, h *hostedReplica) error {
	h.stopReconf()
	close(h.stop)
	err := h.Close()
	<-h.done
	return errors.Join(err,
		c.n.rafts.DropGroup(h.group),
		c.n.logs.Drop(id),
		os.RemoveAll(filepath.Join(c.n.dir, "snapshots", fmt.Sprintf("%d-%d", id.Topic, id.Partition))))
}

// handOff hands the leadership of every partition this node leads to
// another replica, so writes move on before the node stops.
func (c *clusterCatalog) handOff() {
	c.mu.Lock()
	var leading []*hostedReplica
	for _, r := range c.hosted {
		if h := r.(*hostedReplica); h.IsLeader() {
			leading = append(leading, h)
		}
	}
	c.mu.Unlock()
	for _, h := range leading {
		if err := h.LeadershipTransfer(); err != nil {
			c.n.b.logger.Warn("hand away partition leadership on shutdown", "group", h.group, "err", err)
		}
	}
}

// closeAll stops every replica.
func (c *clusterCatalog) closeAll() error {
	c.mu.Lock()
	hosted := c.hosted
	c.hosted = map[log.ID]replica{}
	c.mu.Unlock()
	var errs []error
	for _, r := range hosted {
		h := r.(*hostedReplica)
		h.stopReconf()
		close(h.stop)
		errs = append(errs, h.Close())
		<-h.done
	}
	return errors.Join(errs...)
}

// groupInfos describes the raft groups of the partitions hosted here.
func (c *clusterCatalog) groupInfos() []*runnelpb.RaftGroupInfo {
	st, _ := c.n.ctrl.fsm.view()
	names := map[uint32]string{}
	for _, t := range st.Topics {
		names[t.ID] = t.Name
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*runnelpb.RaftGroupInfo
	for id, r := range c.hosted {
		s := r.(*hostedReplica).Stats()
		leader, _ := strconv.Atoi(s.Leader.ID)
		info := &runnelpb.RaftGroupInfo{
			Group:        fmt.Sprintf("%s/%d", names[id.Topic], id.Partition),
			State:        s.State,
			Leader:       int32(leader),
			Term:         s.Term,
			CommitIndex:  s.CommitIndex,
			AppliedIndex: s.AppliedIndex,
		}
		if !s.LastContact.IsZero() {
			info.LastContactMs = time.Since(s.LastContact).Milliseconds()
		}
		out = append(out, info)
	}
	for id, topic := range c.dropping {
		out = append(out, &runnelpb.RaftGroupInfo{Group: fmt.Sprintf("%s/%d", topic, id.Partition), State: "Shutdown"})
	}
	slices.SortFunc(out, func(a, b *runnelpb.RaftGroupInfo) int { return strings.Compare(a.Group, b.Group) })
	return out
}

// leadersKnown reports a hosted partition that has no leader, if any.
func (c *clusterCatalog) leadersKnown() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.hosted {
		h := r.(*hostedReplica)
		if _, ok := h.Leader(); !ok {
			return fmt.Errorf("partition %s has no leader", h.group)
		}
	}
	return nil
}
