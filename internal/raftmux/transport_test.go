package raftmux

import (
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestTransportCloseWaitsForHeartbeats checks that Close returns only after
// the heartbeat handler calls under way, and that no call starts after it:
// raft runs heartbeats on the transport's goroutines, and one that outlived
// Raft.Shutdown could write to a stable store its owner had closed.
func TestTransportCloseWaitsForHeartbeats(t *testing.T) {
	m1, _ := testMux(t)
	m2, addr2 := testMux(t)
	logger := testLogger(t, slog.LevelDebug)
	sender := NewTransport(layer(t, m1, "g"), logger)
	t.Cleanup(func() { sender.Close() })
	receiver := NewTransport(layer(t, m2, "g"), logger)
	t.Cleanup(func() { receiver.Close() })

	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	calls := 0
	receiver.SetHeartbeatHandler(func(rpc raft.RPC) {
		calls++
		entered <- struct{}{}
		<-release
		rpc.Respond(&raft.AppendEntriesResponse{Term: 1, Success: true}, nil)
	})
	heartbeat := func() error {
		req := &raft.AppendEntriesRequest{
			RPCHeader: raft.RPCHeader{ID: []byte("1"), Addr: []byte("1")},
			Term:      1,
		}
		var resp raft.AppendEntriesResponse
		return sender.AppendEntries("2", raft.ServerAddress(addr2), req, &resp)
	}

	first := make(chan error, 1)
	go func() { first <- heartbeat() }()
	select {
	case <-entered:
	case err := <-first:
		t.Fatalf("heartbeat returned %v before the handler ran", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the heartbeat handler was not called")
	}

	closed := make(chan error, 1)
	go func() { closed <- receiver.Close() }()
	// Close must wait for the handler. Nothing but release lets it return,
	// so a Close that returns first is caught whenever it does.
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a heartbeat handler was running", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("the heartbeat under way at Close: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := heartbeat(); err == nil {
		t.Fatal("a heartbeat after Close succeeded")
	}
	if calls != 1 {
		t.Fatalf("the handler ran %d times, want 1: a heartbeat after Close reached it", calls)
	}
}
