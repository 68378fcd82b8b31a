package raftmux

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
)

// setFSM records the commands applied to it.
type setFSM struct {
	mu   sync.Mutex
	seen map[string]bool
}

var _ raft.FSM = (*setFSM)(nil)

func (f *setFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen[string(l.Data)] = true
	return nil
}

func (f *setFSM) has(cmds []string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range cmds {
		if !f.seen[c] {
			return false
		}
	}
	return true
}

func (f *setFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, errors.New("no snapshots") }
func (f *setFSM) Restore(io.ReadCloser) error         { return errors.New("no snapshots") }

// replica is one node's member of one raft group.
type replica struct {
	raft  *raft.Raft
	fsm   *setFSM
	layer *Layer
}

// startReplica starts group's raft on m, bootstrapped with servers.
func startReplica(t *testing.T, m *Mux, id, group string, servers []raft.Server, logger *slog.Logger) *replica {
	t.Helper()
	layer := layer(t, m, group)
	logger = logger.With("node", id, "group", group)
	cfg := raft.DefaultConfig()
	cfg.LocalID = raft.ServerID(id)
	cfg.HeartbeatTimeout = 200 * time.Millisecond
	cfg.ElectionTimeout = 200 * time.Millisecond
	cfg.LeaderLeaseTimeout = 100 * time.Millisecond
	cfg.CommitTimeout = 5 * time.Millisecond
	cfg.Logger = NewLogger(logger)
	fsm := &setFSM{seen: make(map[string]bool)}
	store := raft.NewInmemStore()
	r, err := raft.NewRaft(cfg, fsm, store, store, raft.NewInmemSnapshotStore(), NewTransport(layer, logger))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Shutdown().Error() })
	if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatal(err)
	}
	return &replica{raft: r, fsm: fsm, layer: layer}
}

// apply applies each command through whichever replica leads, retrying
// while leadership moves.
func apply(t *testing.T, group []*replica, cmds ...string) {
	t.Helper()
	for _, cmd := range cmds {
		waitFor(t, "applying "+cmd, func() bool {
			for _, r := range group {
				if r.raft.State() == raft.Leader {
					return r.raft.Apply([]byte(cmd), time.Second).Error() == nil
				}
			}
			return false
		})
	}
}

func waitApplied(t *testing.T, group []*replica, cmds ...string) {
	t.Helper()
	for i, r := range group {
		waitFor(t, fmt.Sprintf("replica %d to apply %q", i, cmds), func() bool { return r.fsm.has(cmds) })
	}
}

// TestRaftGroupsShareOnePort runs two raft groups over three nodes, each
// node with one port for gRPC and both groups, and stops one group on one
// node without disturbing the other group.
func TestRaftGroupsShareOnePort(t *testing.T) {
	logger := testLogger(t, slog.LevelInfo)
	muxes := make([]*Mux, 3)
	var servers []raft.Server
	for i := range muxes {
		m, addr := testMux(t)
		muxes[i] = m
		servers = append(servers, raft.Server{ID: raft.ServerID(fmt.Sprint(i + 1)), Address: raft.ServerAddress(addr)})
	}
	groups := map[string][]*replica{}
	for _, g := range []string{"a", "b"} {
		for i, m := range muxes {
			groups[g] = append(groups[g], startReplica(t, m, string(servers[i].ID), g, servers, logger))
		}
	}

	apply(t, groups["a"], "a1", "a2", "a3")
	apply(t, groups["b"], "b1", "b2", "b3")
	waitApplied(t, groups["a"], "a1", "a2", "a3")
	waitApplied(t, groups["b"], "b1", "b2", "b3")
	for _, s := range servers {
		checkHealth(t, string(s.Address))
	}

	// Stop group a on node 3, which closes its layer; the Mux now refuses
	// the group there.
	stopped := groups["a"][2]
	if err := stopped.raft.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	if _, err := stopped.layer.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on the stopped group's layer: %v", err)
	}
	muxes[2].mu.Lock()
	groupsOn3 := slices.Sorted(maps.Keys(muxes[2].layers))
	muxes[2].mu.Unlock()
	if diff := cmp.Diff([]string{"b"}, groupsOn3); diff != "" {
		t.Fatalf("groups on node 3 (-want +got):\n%s", diff)
	}

	// Group b goes on on all three nodes, group a on the other two.
	apply(t, groups["b"], "b4")
	waitApplied(t, groups["b"], "b4")
	apply(t, groups["a"][:2], "a4")
	waitApplied(t, groups["a"][:2], "a4")
	checkHealth(t, string(servers[2].Address))
}
