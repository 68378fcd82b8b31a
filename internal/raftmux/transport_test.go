package raftmux

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// transportPair returns two transports of group "g" on muxes of their own,
// closed when the test ends, and the receiver's address.
func transportPair(t *testing.T) (sender, receiver *Transport, receiverAddr string) {
	t.Helper()
	m1, _ := testMux(t)
	m2, addr2 := testMux(t)
	logger := testLogger(t, slog.LevelDebug)
	sender = NewTransport(layer(t, m1, "g"), logger)
	t.Cleanup(func() { sender.Close() })
	receiver = NewTransport(layer(t, m2, "g"), logger)
	t.Cleanup(func() { receiver.Close() })
	return sender, receiver, addr2
}

// serveRPCs answers tr's RPCs with respond until the test ends.
func serveRPCs(t *testing.T, tr *Transport, respond func(rpc raft.RPC)) {
	stop := make(chan struct{})
	served := make(chan struct{})
	t.Cleanup(func() { close(stop); <-served })
	go func() {
		defer close(served)
		for {
			select {
			case rpc := <-tr.Consumer():
				respond(rpc)
			case <-stop:
				return
			}
		}
	}()
}

// TestTransportCloseWaitsForHeartbeats checks that Close returns only after
// the heartbeat handler calls under way, and that no call starts after it:
// raft runs heartbeats on the transport's goroutines, and one that outlived
// Raft.Shutdown could write to a stable store its owner had closed.
func TestTransportCloseWaitsForHeartbeats(t *testing.T) {
	sender, receiver, addr2 := transportPair(t)

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
	// The heartbeat under way returns, answered or not: Close may end its
	// connection before the answer is written.
	<-first
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
	sender, receiver, addr2 := transportPair(t)

	answered := make(chan uint64, 100)
	serveRPCs(t, receiver, func(rpc raft.RPC) {
		req := rpc.Command.(*raft.AppendEntriesRequest)
		rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, Success: false}, nil)
		answered <- req.PrevLogEntry
	})

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

// TestAppendEntriesWaitsForARefusingPeer sends AppendEntries to an address
// nothing listens on: the call waits, trying again, and succeeds once a
// node serves the group there. With a short hold and nobody coming, it
// fails with the connection error.
func TestAppendEntriesWaitsForARefusingPeer(t *testing.T) {
	l := listen(t)
	addr := l.Addr().String()
	l.Close()

	m1, _ := testMux(t)
	logger := testLogger(t, slog.LevelDebug)
	sender := NewTransport(layer(t, m1, "g"), logger)
	t.Cleanup(func() { sender.Close() })
	sender.hold = time.Minute
	refusals := make(chan struct{}, 1)
	sender.onRefused = func() {
		select {
		case refusals <- struct{}{}:
		default:
		}
	}
	req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("1"), Addr: []byte("1")}, Term: 1}
	done := make(chan error, 1)
	go func() {
		var resp raft.AppendEntriesResponse
		done <- sender.AppendEntries("2", raft.ServerAddress(addr), req, &resp)
	}()
	select {
	case <-refusals:
	case err := <-done:
		t.Fatalf("AppendEntries to a refusing address returned %v without waiting", err)
	}

	// A node comes up at the address and answers.
	l2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the address was taken meanwhile: %v", err)
	}
	receiver := NewTransport(layer(t, muxOn(t, l2), "g"), logger)
	t.Cleanup(func() { receiver.Close() })
	serveRPCs(t, receiver, func(rpc raft.RPC) {
		rpc.Respond(&raft.AppendEntriesResponse{Term: 1, Success: true}, nil)
	})
	if err := <-done; err != nil {
		t.Fatalf("AppendEntries once the peer is up: %v", err)
	}

	// Nobody comes: the call gives up after its hold, with the error.
	l3 := listen(t)
	nobody := raft.ServerAddress(l3.Addr().String())
	l3.Close()
	sender.hold = 50 * time.Millisecond
	var resp raft.AppendEntriesResponse
	if err := sender.AppendEntries("3", nobody, req, &resp); !refused(err) {
		t.Fatalf("AppendEntries to nobody: %v, want a connection error", err)
	}

	// Interrupt (which Close calls) ends a wait under way, and a later
	// call to a refusing peer fails without one.
	sender.hold = time.Minute
	for len(refusals) > 0 {
		<-refusals
	}
	go func() {
		var resp raft.AppendEntriesResponse
		done <- sender.AppendEntries("3", nobody, req, &resp)
	}()
	<-refusals
	sender.Interrupt()
	if err := <-done; !refused(err) {
		t.Fatalf("AppendEntries to nobody after Interrupt: %v, want a connection error", err)
	}
	go func() {
		var resp raft.AppendEntriesResponse
		done <- sender.AppendEntries("3", nobody, req, &resp)
	}()
	select {
	case err := <-done:
		if !refused(err) {
			t.Fatalf("AppendEntries to nobody after Interrupt: %v, want a connection error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("AppendEntries to nobody after Interrupt still waits after 10 s, its hold is a minute")
	}
}

// TestRefusedIsARefusedDial checks which connection errors AppendEntries
// holds: a refused dial only, not a dial that timed out nor a failure
// after the connection was made.
func TestRefusedIsARefusedDial(t *testing.T) {
	refusedDial := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{refusedDial, true},
		{fmt.Errorf("raft: %w", refusedDial), true},
		{&net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}, false},
		{&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, false},
		{&net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.ECONNREFUSED)}, false},
		{nil, false},
	} {
		if got := refused(c.err); got != c.want {
			t.Errorf("refused(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
