package raftmux_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/runnel-dev/runnel/internal/raftmux"
)

// Example serves gRPC and a raft group on one port. A node of a cluster
// does the same with its --cluster address as advertise and one Layer per
// raft group.
func Example() {
	logger := slog.New(slog.DiscardHandler)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	sp := raftmux.Split(l, logger)
	defer sp.Close()

	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(sp.Apps())
	defer srv.Stop()

	mux, err := raftmux.New(sp.Raft(), l.Addr().String(), logger)
	if err != nil {
		panic(err)
	}
	defer mux.Close()

	layer, err := mux.Layer("controller")
	if err != nil {
		panic(err)
	}
	trans := raftmux.NewTransport(layer, logger.With("group", "controller"))

	cfg := raft.DefaultConfig()
	cfg.LocalID = "1"
	cfg.Logger = raftmux.NewLogger(logger.With("group", "controller"))
	leader := make(chan bool, 1)
	cfg.NotifyCh = leader
	store := raft.NewInmemStore()
	r, err := raft.NewRaft(cfg, &lastFSM{}, store, store, raft.NewInmemSnapshotStore(), trans)
	if err != nil {
		panic(err)
	}
	defer func() { _ = r.Shutdown().Error() }() // closes trans, hence layer

	servers := []raft.Server{{ID: "1", Address: trans.LocalAddr()}}
	if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		panic(err)
	}
	select {
	case <-leader:
	case <-time.After(10 * time.Second):
		panic("no leader")
	}
	f := r.Apply([]byte("hello"), time.Second)
	if err := f.Error(); err != nil {
		panic(err)
	}
	fmt.Println(f.Response())
	fmt.Println(trans.LocalAddr() == raft.ServerAddress(l.Addr().String()))
	// Output:
	// hello
	// true
}

// lastFSM returns the command it applies.
type lastFSM struct{}

func (*lastFSM) Apply(l *raft.Log) any               { return string(l.Data) }
func (*lastFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, errors.New("no snapshots") }
func (*lastFSM) Restore(io.ReadCloser) error         { return errors.New("no snapshots") }
