package raftstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// listFSM is a raft FSM that keeps the commands it applied, in order. A
// command it has already applied is skipped: the test retries an apply whose
// outcome raft reports as unknown (leadership lost), and such an entry may
// have been committed after all.
type listFSM struct {
	mu   sync.Mutex
	cmds []string
}

var _ raft.FSM = (*listFSM)(nil)

func (f *listFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	if slices.Contains(f.cmds, string(l.Data)) {
		return len(f.cmds)
	}
	f.cmds = append(f.cmds, string(l.Data))
	return len(f.cmds)
}

func (f *listFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return listSnapshot(slices.Clone(f.cmds)), nil
}

func (f *listFSM) Restore(r io.ReadCloser) error {
	defer r.Close()
	var cmds []string
	if err := json.NewDecoder(r).Decode(&cmds); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = cmds
	return nil
}

func (f *listFSM) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.cmds)
}

type listSnapshot []string

func (s listSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode([]string(s)); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (listSnapshot) Release() {}

// testCluster is a few nodes, each with one Store shared by the raft
// groups it runs, talking over raft's in-memory transport.
type testCluster struct {
	t      *testing.T
	dirs   []string
	groups []string
	nodes  []*testNode
}

type testNode struct {
	store *Store
	rafts map[string]*raft.Raft
	fsms  map[string]*listFSM
	trans map[string]*raft.InmemTransport
}

func nodeID(i int) raft.ServerID { return raft.ServerID(fmt.Sprint("node-", i)) }

func nodeAddr(i int, group string) raft.ServerAddress {
	return raft.ServerAddress(fmt.Sprintf("node-%d/%s", i, group))
}

func newTestCluster(t *testing.T, nodes int, groups ...string) *testCluster {
	c := &testCluster{t: t, groups: groups, nodes: make([]*testNode, nodes)}
	for range nodes {
		c.dirs = append(c.dirs, t.TempDir())
	}
	for i := range nodes {
		c.start(i)
	}
	for _, g := range groups {
		var servers []raft.Server
		for i := range nodes {
			servers = append(servers, raft.Server{ID: nodeID(i), Address: nodeAddr(i, g)})
		}
		if err := c.nodes[0].rafts[g].BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for i, n := range c.nodes {
			if n != nil {
				c.stop(i)
			}
		}
	})
	return c
}

// start opens node i's Store and starts its rafts.
func (c *testCluster) start(i int) {
	t := c.t
	store, err := Open(filepath.Join(c.dirs[i], "raft"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{
		store: store,
		rafts: map[string]*raft.Raft{},
		fsms:  map[string]*listFSM{},
		trans: map[string]*raft.InmemTransport{},
	}
	for _, g := range c.groups {
		conf := raft.DefaultConfig()
		conf.LocalID = nodeID(i)
		conf.LogOutput = io.Discard
		conf.HeartbeatTimeout = 50 * time.Millisecond
		conf.ElectionTimeout = 50 * time.Millisecond
		conf.LeaderLeaseTimeout = 50 * time.Millisecond
		conf.CommitTimeout = 5 * time.Millisecond
		// Snapshot and truncate often, so DeleteRange runs under raft.
		conf.SnapshotInterval = 20 * time.Millisecond
		conf.SnapshotThreshold = 8
		conf.TrailingLogs = 4
		snaps, err := raft.NewFileSnapshotStore(filepath.Join(c.dirs[i], "snap-"+g), 2, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		_, trans := raft.NewInmemTransport(nodeAddr(i, g))
		for j, peer := range c.nodes {
			if j != i && peer != nil {
				trans.Connect(nodeAddr(j, g), peer.trans[g])
				peer.trans[g].Connect(nodeAddr(i, g), trans)
			}
		}
		fsm := &listFSM{}
		grp := store.Group(g)
		r, err := raft.NewRaft(conf, fsm, grp, grp, snaps, trans)
		if err != nil {
			t.Fatal(err)
		}
		n.rafts[g], n.fsms[g], n.trans[g] = r, fsm, trans
	}
	c.nodes[i] = n
}

// stop shuts node i's rafts down and closes its Store.
func (c *testCluster) stop(i int) {
	n := c.nodes[i]
	for g, r := range n.rafts {
		if err := r.Shutdown().Error(); err != nil {
			c.t.Errorf("node %d group %s: shutdown: %v", i, g, err)
		}
		for j, peer := range c.nodes {
			if j != i && peer != nil {
				peer.trans[g].Disconnect(nodeAddr(i, g))
			}
		}
		n.trans[g].Close()
	}
	if err := n.store.Close(); err != nil {
		c.t.Errorf("node %d: close store: %v", i, err)
	}
	c.nodes[i] = nil
}

// apply applies cmd to group g through whichever node leads it, retrying
// while leadership moves.
func (c *testCluster) apply(g, cmd string) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error = raft.ErrNotLeader
		for _, n := range c.nodes {
			if n != nil && n.rafts[g].State() == raft.Leader {
				err = n.rafts[g].Apply([]byte(cmd), time.Second).Error()
				break
			}
		}
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("group %s: apply %s: %v", g, cmd, err)
		}
		if !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, raft.ErrLeadershipLost) {
			c.t.Logf("group %s: apply %s: %v; retrying", g, cmd, err)
		}
		time.Sleep(10 * time.Millisecond) // poll interval while a leader is elected
	}
}

// waitFSM waits until node i's FSM for group g has applied exactly want.
func (c *testCluster) waitFSM(i int, g string, want []string) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := c.nodes[i].fsms[g].list()
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("node %d group %s: FSM has %d commands, want %d (last %q)", i, g, len(got), len(want), got[max(0, len(got)-1):])
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

// TestRaftCluster runs raft groups on raftstore groups: three nodes, each
// with one Store shared by all its groups. It applies commands, restarts a
// node on its Store's directory while the others go on, and checks that
// the node catches up from its own log and its peers.
func TestRaftCluster(t *testing.T) {
	groups := []string{"controller", "orders/0", "orders/1"}
	c := newTestCluster(t, 3, groups...)
	want := map[string][]string{}
	applyN := func(from, to int) {
		for _, g := range groups {
			for k := from; k < to; k++ {
				cmd := fmt.Sprintf("%s-%d", g, k)
				c.apply(g, cmd)
				want[g] = append(want[g], cmd)
			}
		}
	}

	applyN(0, 30)
	for i := range c.nodes {
		for _, g := range groups {
			c.waitFSM(i, g, want[g])
		}
	}

	// Restart node 2 while the others go on: it must keep its term, vote
	// and log, and fetch what it missed.
	c.stop(2)
	applyN(30, 50)
	c.start(2)
	applyN(50, 60)
	for i := range c.nodes {
		for _, g := range groups {
			c.waitFSM(i, g, want[g])
		}
	}

	// Snapshots truncated the logs under raft: every group's log starts
	// well after index 1 and holds the recent entries.
	for _, g := range groups {
		grp := c.nodes[0].store.Group(g)
		first, _ := grp.FirstIndex()
		last, _ := grp.LastIndex()
		if first <= 1 || last < first {
			t.Errorf("node 0 group %s: log %d-%d; want truncated by snapshots", g, first, last)
		}
	}
	st := c.nodes[0].store.Stats()
	t.Logf("node 0: %d entries in %d StoreLogs calls, %d WAL syncs", st.Entries, st.StoreCalls, st.Syncs)
}
