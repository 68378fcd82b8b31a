package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// controllerGroup is the raft group name of the controller.
const controllerGroup = "controller"

// controller runs this node's member of the controller raft group, which
// replicates the cluster state (nodes, topics, assignments, configs,
// partition leaders) over every node.
type controller struct {
	nodeID    int32
	raft      *raft.Raft
	transport raft.Transport
	fsm       *controllerFSM
	logger    *slog.Logger
}

// raftStore is what a raft member needs from its log and stable store.
type raftStore interface {
	raft.LogStore
	raft.StableStore
}

// controllerFSM applies commands to the cluster state.
type controllerFSM struct {
	mu      sync.RWMutex
	state   *clusterState
	applied uint64
	// changed is closed and replaced after every apply and restore that
	// changes more than committed offsets, which are too frequent to wake
	// every watcher of the state; appliedCh after every apply and restore.
	changed   chan struct{}
	appliedCh chan struct{}
	// shared is the copy of the state view hands out, made on the first
	// view after a change (set to nil with every close of changed): every
	// produce and fetch looks up its topic in it.
	shared atomic.Pointer[clusterState]
}

var _ raft.FSM = (*controllerFSM)(nil)

func newControllerFSM() *controllerFSM {
	return &controllerFSM{state: newClusterState(), changed: make(chan struct{}), appliedCh: make(chan struct{})}
}

// Apply applies one committed command; a refused command returns its error
// as the response.
func (f *controllerFSM) Apply(l *raft.Log) any {
	c, err := decodeCommand(l.Data)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		err = f.state.apply(c)
	}
	f.applied = l.Index
	if c.CommitOffsets == nil {
		f.shared.Store(nil)
		close(f.changed)
		f.changed = make(chan struct{})
	}
	close(f.appliedCh)
	f.appliedCh = make(chan struct{})
	return err
}

// Snapshot captures the state; it is small, so a copy is fine.
func (f *controllerFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &stateSnapshot{data: mustJSON(f.state)}, nil
}

// Restore replaces the state with a snapshot's.
func (f *controllerFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	s := newClusterState()
	if err := unmarshalJSON(data, s); err != nil {
		return fmt.Errorf("restore controller snapshot: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state = s
	f.shared.Store(nil)
	close(f.changed)
	f.changed = make(chan struct{})
	close(f.appliedCh)
	f.appliedCh = make(chan struct{})
	return nil
}

// view returns a copy of the state, without committed offsets, and a
// channel closed at the next change. The copy is shared by every caller
// until the state changes: it must not be modified.
func (f *controllerFSM) view() (*clusterState, <-chan struct{}) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	st := f.shared.Load()
	if st == nil {
		// Changes hold f.mu for writing, so the copy made here is of
		// the state that goes with f.changed.
		st = f.state.clone()
		f.shared.CompareAndSwap(nil, st)
	}
	return st, f.changed
}

type stateSnapshot struct{ data []byte }

func (s *stateSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s.data); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *stateSnapshot) Release() {}

// controllerConfig is the controller's raft configuration.
func controllerConfig(nodeID int32, logger hclog.Logger) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(strconv.Itoa(int(nodeID)))
	c.Logger = logger
	c.HeartbeatTimeout = 500 * time.Millisecond
	c.ElectionTimeout = 500 * time.Millisecond
	c.LeaderLeaseTimeout = 250 * time.Millisecond
	// CommitTimeout is how often the leader sends each follower the
	// commit index when no entry is flowing (raft waits between one and
	// two of it): a follower's view of the state trails the leader's by
	// up to 100 ms while nothing else changes, and a command proposed
	// through a follower, which waits until that follower applied it,
	// takes as much longer. At 5 ms those empty rounds cost an idle
	// controller leader 13% of a core; at 50 ms, 4%.
	c.CommitTimeout = 50 * time.Millisecond
	c.SnapshotThreshold = 1024
	c.TrailingLogs = 1024
	return c
}

// openController starts this node's controller member on store, with
// snapshots in dir. With peers and no existing state it bootstraps the
// group with them as voters, unless joining (if not nil) says that the
// peers already run a cluster: then the node waits to be added by the
// leader, since a bootstrap with another server list would start a second
// group. A restarted node rejoins from its store. The caller owns store and
// closes it after close.
//
// The raft log lives in the node's shared Pebble raft store rather than in
// raft-boltdb: raft-boltdb (the module that builds with raft v1.8.0) sits on
// boltdb/bolt 1.3.1, which Go's race detector stops with a checkptr fault.
func openController(dir string, nodeID int32, transport raft.Transport, peers map[int32]string, joining func() bool, store raftStore, hlog hclog.Logger, logger *slog.Logger) (*controller, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("controller: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hlog)
	if err != nil {
		return nil, fmt.Errorf("controller: open snapshots: %w", err)
	}
	has, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return nil, fmt.Errorf("controller: %w", err)
	}
	if !has && len(peers) > 0 && joining != nil && joining() {
		logger.Info("the other nodes already run a cluster; waiting to be added with: runnel cluster add", "node", nodeID, "addr", peers[nodeID])
		peers = nil
	}
	fsm := newControllerFSM()
	r, err := raft.NewRaft(controllerConfig(nodeID, hlog), fsm, store, store, snaps, transport)
	if err != nil {
		return nil, fmt.Errorf("controller: start raft: %w", err)
	}
	c := &controller{nodeID: nodeID, raft: r, transport: transport, fsm: fsm, logger: logger}
	if !has && len(peers) > 0 {
		var cfg raft.Configuration
		for id, addr := range peers {
			cfg.Servers = append(cfg.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(strconv.Itoa(int(id))), Address: raft.ServerAddress(addr)})
		}
		if err := r.BootstrapCluster(cfg).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			c.close()
			return nil, fmt.Errorf("controller: bootstrap: %w", err)
		}
	}
	return c, nil
}

// leader returns the controller leader's id and address, 0 and "" when
// there is none.
func (c *controller) leader() (int32, string) {
	addr, id := c.raft.LeaderWithID()
	n, _ := strconv.Atoi(string(id))
	return int32(n), string(addr)
}

// applyLocal proposes cmd on this node, which must be the leader, and
// returns the index it was applied at. It returns the command's own error
// (such as ErrTopicExists) or a raft error.
func (c *controller) applyLocal(ctx context.Context, cmd command) (uint64, error) {
	timeout := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	f := c.raft.Apply(cmd.encode(), timeout)
	if err := f.Error(); err != nil {
		return 0, raftError(err)
	}
	if err, ok := f.Response().(error); ok {
		return 0, err
	}
	return f.Index(), nil
}

// waitApplied waits until this node's FSM has applied index, so that a
// reader here sees a change proposed elsewhere.
func (c *controller) waitApplied(ctx context.Context, index uint64) error {
	for {
		c.fsm.mu.RLock()
		applied, changed := c.fsm.applied, c.fsm.appliedCh
		c.fsm.mu.RUnlock()
		if applied >= index {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// close stops raft; a transport with an Interrupt method (raftmux's) is
// interrupted first, as partition replicas do, so that raft's replicators
// are not left waiting for a peer that is down.
func (c *controller) close() error {
	if t, ok := c.transport.(interface{ Interrupt() }); ok {
		t.Interrupt()
	}
	return c.raft.Shutdown().Error()
}

// raftError maps raft's errors to the broker's: a lost leadership leaves
// the outcome unknown; no leader or shutdown is a plain unavailability.
func raftError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %v", ErrNoLeader, err)
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %v", ErrOutcomeUnknown, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %v", ErrShuttingDown, err)
	}
	return err
}
