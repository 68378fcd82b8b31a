package client

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// commitStreams sends offset commits over one CommitStream per broker
// instead of a unary call each: a commit then costs the broker and the
// client a message on an open stream rather than a new HTTP/2 stream with
// its headers. A broker that does not serve CommitStream gets unary calls.
type commitStreams struct {
	c *Client

	mu      sync.Mutex
	closed  bool
	opened  int                      // streams opened, for tests
	streams map[string]*commitStream // by broker address
	unary   map[string]bool          // brokers without CommitStream
}

// close stops new streams from opening; the client's context, already
// cancelled, ends the open ones.
func (s *commitStreams) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// commitStream is one open CommitStream and the commits waiting on it.
type commitStream struct {
	addr   string
	stream runnelpb.Groups_CommitStreamClient
	cancel context.CancelFunc

	sendMu sync.Mutex

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan error
	err     error // set once the stream broke; pending is then empty
}

// errCommitStreamUnimplemented sends a commit to the unary call.
var errCommitStreamUnimplemented = errors.New("broker does not serve CommitStream")

// commit commits req at addr over its stream, or with a unary call to a
// broker without one. The error is a client error, as fromStatus returns.
func (s *commitStreams) commit(ctx context.Context, addr string, gc runnelpb.GroupsClient, req *runnelpb.CommitOffsetsRequest) error {
	cs, err := s.stream(addr, gc)
	if err == nil {
		err = cs.commit(ctx, req)
	}
	if !errors.Is(err, errCommitStreamUnimplemented) {
		return err
	}
	_, err = gc.CommitOffsets(ctx, req)
	return fromStatus(err, addr)
}

// stream returns the open stream to addr, opening one if there is none.
func (s *commitStreams) stream(addr string, gc runnelpb.GroupsClient) (*commitStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unary[addr] {
		return nil, errCommitStreamUnimplemented
	}
	if cs, ok := s.streams[addr]; ok {
		return cs, nil
	}
	if s.closed || s.c.ctx.Err() != nil {
		return nil, ErrClosed
	}
	// The stream lives as long as the client, not as the call opening it.
	ctx, cancel := context.WithCancel(s.c.ctx)
	st, err := gc.CommitStream(ctx)
	if err != nil {
		cancel()
		return nil, fromStatus(err, addr)
	}
	cs := &commitStream{addr: addr, stream: st, cancel: cancel, pending: make(map[uint64]chan error)}
	if s.streams == nil {
		s.streams = make(map[string]*commitStream)
	}
	s.streams[addr] = cs
	s.opened++
	s.c.goFunc(func() { s.receive(cs) })
	return cs, nil
}

// receive hands each response to its commit until the stream breaks, then
// fails the commits still waiting, and forgets the stream so that the next
// commit opens a new one.
func (s *commitStreams) receive(cs *commitStream) {
	var err error
	for {
		var resp *runnelpb.CommitStreamResponse
		resp, err = cs.stream.Recv()
		if err != nil {
			break
		}
		cs.mu.Lock()
		done, ok := cs.pending[resp.GetRequestId()]
		delete(cs.pending, resp.GetRequestId())
		cs.mu.Unlock()
		if ok {
			done <- fromProto(resp.GetError())
		}
	}
	cs.cancel()
	unimplemented := status.Code(err) == codes.Unimplemented
	switch {
	case unimplemented:
		err = errCommitStreamUnimplemented
	case s.c.ctx.Err() != nil:
		err = ErrClosed
	default:
		// The commits may or may not have been made: a commit is safe to
		// repeat, so they fail as a broken connection, which is retried.
		err = &ConnectError{Addr: cs.addr, Err: fmt.Errorf("commit stream broke: %w", fromStatus(err, cs.addr))}
	}
	s.mu.Lock()
	if s.streams[cs.addr] == cs {
		delete(s.streams, cs.addr)
	}
	if unimplemented {
		if s.unary == nil {
			s.unary = make(map[string]bool)
		}
		s.unary[cs.addr] = true
	}
	s.mu.Unlock()
	cs.mu.Lock()
	cs.err = err
	pending := cs.pending
	cs.pending = nil
	cs.mu.Unlock()
	for _, done := range pending {
		done <- err
	}
}

// commit sends req and waits for its answer, the stream to break, or ctx.
func (cs *commitStream) commit(ctx context.Context, req *runnelpb.CommitOffsetsRequest) error {
	done := make(chan error, 1)
	cs.mu.Lock()
	if cs.err != nil {
		err := cs.err
		cs.mu.Unlock()
		return err
	}
	cs.nextID++
	id := cs.nextID
	cs.pending[id] = done
	cs.mu.Unlock()
	cs.sendMu.Lock()
	err := cs.stream.Send(&runnelpb.CommitStreamRequest{RequestId: id, Commit: req})
	cs.sendMu.Unlock()
	if err != nil {
		// Send fails with io.EOF once the stream is gone; receive learns
		// why and answers every waiting commit, this one included.
		return <-done
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		cs.mu.Lock()
		delete(cs.pending, id)
		cs.mu.Unlock()
		return fmt.Errorf("commit to %s: %w", cs.addr, ctx.Err())
	}
}
