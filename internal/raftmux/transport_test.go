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

// TestPipelineSendsDoNotWaitForAStoppedReader checks that pipelined sends
// go on after the reader of the answers stops, as raft's stops after a
// follower's Success=false. With raft's own pipeline the second send after
// that waits for good: its decoder holds an answer nobody takes.
func TestPipelineSendsDoNotWaitForAStoppedReader(t *testing.T) {
	m1, _ := testMux(t)
	m2, addr2 := testMux(t)
	logger := testLogger(t, slog.LevelDebug)
	sender := NewTransport(layer(t, m1, "g"), logger)
	t.Cleanup(func() { sender.Close() })
	receiver := NewTransport(layer(t, m2, "g"), logger)
	t.Cleanup(func() { receiver.Close() })

	answered := make(chan uint64, 100)
	stop := make(chan struct{})
	served := make(chan struct{})
	t.Cleanup(func() { close(stop); <-served })
	go func() {
		defer close(served)
		for {
			select {
			case rpc := <-receiver.Consumer():
				req := rpc.Command.(*raft.AppendEntriesRequest)
				rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, Success: false}, nil)
				answered <- req.PrevLogEntry
			case <-stop:
				return
			}
		}
	}()

	p, err := sender.AppendEntriesPipeline("2", raft.ServerAddress(addr2))
	if err != nil {
		t.Fatalf("AppendEntriesPipeline: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	send := func(i uint64) {
		t.Helper()
		req := &raft.AppendEntriesRequest{
			RPCHeader:    raft.RPCHeader{ID: []byte("1"), Addr: []byte("1")},
			Term:         1,
			PrevLogEntry: i,
			PrevLogTerm:  1,
			Entries:      []*raft.Log{{Index: i + 1, Term: 1, Type: raft.LogCommand, Data: []byte("x")}},
		}
		sent := make(chan error, 1)
		go func() {
			_, err := p.AppendEntries(req, new(raft.AppendEntriesResponse))
			sent <- err
		}()
		select {
		case err := <-sent:
			if err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("send %d still waiting after 10 s with nobody reading the answers", i)
		}
	}

	send(1)
	select {
	case f := <-p.Consumer():
		if f.Response().Success {
			t.Fatal("the answer says Success, the receiver refused")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer to the first send")
	}
	// Like raft after a refusal: no more reads, but a few more sends.
	for i := uint64(2); i <= 6; i++ {
		send(i)
	}
	for want := uint64(1); want <= 6; want++ {
		if got := <-answered; got != want {
			t.Fatalf("the receiver answered send %d, want %d", got, want)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
