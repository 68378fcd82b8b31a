package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// commitStreams sends offset commits over one CommitStream per broker
// instead of a unary call each: a commit then costs the broker and the
// client a message on an open stream rather than a new HTTP/2 stream with
// its headers. A broker that does not serve CommitStream gets unary calls.
//
// A stream is opened on a goroutine of the client, bounded by
// RequestTimeout, while the commits that need it wait for it with their
// own contexts; mu is never held across a call to a broker. A stream is
// closed when a commit's context ends while its Send is blocked (the
// broker stopped reading), when the broker answers that it is not the
// coordinator, and when it has not been used for commitStreamIdle.
type commitStreams struct {
	c *Client

	mu      sync.Mutex
	closed  bool
	opened  int                      // streams opened, for tests
	streams map[string]*commitStream // by broker address, open or opening
	unary   map[string]bool          // brokers without CommitStream
}

// close stops new streams from opening; the client's context, already
// cancelled, ends the open ones.
func (s *commitStreams) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// forget removes cs from the streams, so that the next commit to its
// broker opens a new one.
func (s *commitStreams) forget(cs *commitStream) {
	s.mu.Lock()
	if s.streams[cs.addr] == cs {
		delete(s.streams, cs.addr)
	}
	s.mu.Unlock()
}

// commitStream is one CommitStream and the commits waiting on it.
type commitStream struct {
	s         *commitStreams
	addr      string
	idleAfter time.Duration // commitStreamIdle when it opened

	// ready is closed once the stream is open, or failed to open with
	// openErr; stream and cancel are set before.
	ready   chan struct{}
	openErr error
	stream  runnelpb.Groups_CommitStreamClient
	cancel  context.CancelFunc

	// sendSlot holds a token while a commit sends.
	sendSlot chan struct{}

	mu       sync.Mutex
	idle     *time.Timer // runs closeIfIdle
	nextID   uint64
	pending  map[uint64]chan error
	lastUsed time.Time
	// err is set once the stream is closing or broke: no commit joins it
	// then. errStreamClosed sends a commit to a new stream.
	err error
}

// errCommitStreamUnimplemented sends a commit to the unary call.
var errCommitStreamUnimplemented = errors.New("broker does not serve CommitStream")

// errStreamClosed is the error of a stream closed by the client: a commit
// that finds it tries a new stream.
var errStreamClosed = errors.New("commit stream closed")

// commit commits req at addr over its stream, or with a unary call to a
// broker without one. The error is a client error, as fromStatus returns.
func (s *commitStreams) commit(ctx context.Context, addr string, gc runnelpb.GroupsClient, req *runnelpb.CommitOffsetsRequest) error {
	for {
		cs, err := s.stream(ctx, addr, gc)
		if err == nil {
			err = cs.commit(ctx, req)
			if errors.Is(err, errStreamClosed) && ctx.Err() == nil {
				continue // closed as this commit came; it is forgotten
			}
		}
		if !errors.Is(err, errCommitStreamUnimplemented) {
			return err
		}
		_, err = gc.CommitOffsets(ctx, req)
		return fromStatus(err, addr)
	}
}

// stream returns the stream to addr, opening one if there is none, once
// it is open or ctx ends.
func (s *commitStreams) stream(ctx context.Context, addr string, gc runnelpb.GroupsClient) (*commitStream, error) {
	s.mu.Lock()
	if s.unary[addr] {
		s.mu.Unlock()
		return nil, errCommitStreamUnimplemented
	}
	cs, ok := s.streams[addr]
	if !ok {
		if s.closed || s.c.ctx.Err() != nil {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		cs = &commitStream{s: s, addr: addr, idleAfter: commitStreamIdle, ready: make(chan struct{}),
			sendSlot: make(chan struct{}, 1), pending: make(map[uint64]chan error)}
		if s.streams == nil {
			s.streams = make(map[string]*commitStream)
		}
		s.streams[addr] = cs
		s.opened++
		s.c.goFunc(func() { s.run(cs, gc) })
	}
	s.mu.Unlock()
	select {
	case <-cs.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("open commit stream to %s: %w", addr, ctx.Err())
	}
	if cs.openErr != nil {
		return nil, cs.openErr
	}
	return cs, nil
}

// run opens cs, then receives on it until it ends.
func (s *commitStreams) run(cs *commitStream, gc runnelpb.GroupsClient) {
	// The stream lives as long as the client, or until it is closed, not
	// as the commit that needed it; opening it takes at most
	// RequestTimeout.
	ctx, cancel := context.WithCancel(s.c.ctx)
	timeout := time.AfterFunc(s.c.cfg.requestTimeout, cancel)
	st, err := gc.CommitStream(ctx)
	if !timeout.Stop() {
		err = &ConnectError{Addr: cs.addr, Err: fmt.Errorf("open commit stream: no answer in %s", s.c.cfg.requestTimeout)}
	}
	if err != nil {
		cancel()
		if s.c.ctx.Err() != nil {
			err = ErrClosed
		} else if !isConnectError(err) {
			err = fromStatus(err, cs.addr)
		}
		s.forget(cs)
		cs.openErr = err
		close(cs.ready)
		return
	}
	cs.stream, cs.cancel = st, cancel
	cs.mu.Lock()
	cs.lastUsed = time.Now()
	cs.idle = time.AfterFunc(cs.idleAfter, cs.closeIfIdle)
	cs.mu.Unlock()
	close(cs.ready)
	s.receive(cs)
}

// receive hands each response to its commit until the stream ends, then
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
		cerr := fromProto(resp.GetError())
		if errors.Is(cerr, ErrNotLeader) {
			// NOT_COORDINATOR: the node takes no commits. The commits
			// on their way get their answers, and then the stream ends.
			cs.closeLater()
		}
		cs.mu.Lock()
		done, ok := cs.pending[resp.GetRequestId()]
		delete(cs.pending, resp.GetRequestId())
		drained := cs.err != nil && len(cs.pending) == 0
		cs.mu.Unlock()
		if drained {
			cs.cancel()
		}
		if ok {
			done <- cerr
		}
	}
	cs.cancel()
	cs.mu.Lock()
	cs.idle.Stop()
	cs.mu.Unlock()
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
	if cs.err == nil || unimplemented {
		cs.err = err
	}
	pending := cs.pending
	cs.pending = nil
	cs.mu.Unlock()
	for _, done := range pending {
		done <- err
	}
}

// closeLater takes cs out of use: no commit joins it, and it ends once
// the commits on it are answered.
func (cs *commitStream) closeLater() {
	cs.mu.Lock()
	if cs.err == nil {
		cs.err = errStreamClosed
	}
	cs.mu.Unlock()
	cs.s.forget(cs)
}

// tearDown ends cs now: the commits on it fail as on a broken
// connection.
func (cs *commitStream) tearDown() {
	cs.closeLater()
	cs.cancel()
}

// closeIfIdle ends cs when no commit used it for idleAfter, and checks
// again later otherwise.
func (cs *commitStream) closeIfIdle() {
	cs.mu.Lock()
	if cs.err != nil {
		cs.mu.Unlock()
		return
	}
	if left := cs.idleAfter - time.Since(cs.lastUsed); left > 0 || len(cs.pending) > 0 {
		cs.idle.Reset(max(left, cs.idleAfter/10))
		cs.mu.Unlock()
		return
	}
	cs.err = errStreamClosed
	cs.mu.Unlock()
	cs.s.forget(cs)
	cs.cancel()
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
	cs.lastUsed = time.Now()
	cs.mu.Unlock()
	if err := cs.send(ctx, &runnelpb.CommitStreamRequest{RequestId: id, Commit: req}); err != nil {
		if ctx.Err() == nil {
			// Send fails with io.EOF once the stream is gone; receive
			// learns why and answers every waiting commit, this one
			// included.
			return <-done
		}
		cs.drop(id)
		return fmt.Errorf("commit to %s: %w", cs.addr, ctx.Err())
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		cs.drop(id)
		return fmt.Errorf("commit to %s: %w", cs.addr, ctx.Err())
	}
}

// drop forgets the commit id, whose caller no longer waits.
func (cs *commitStream) drop(id uint64) {
	cs.mu.Lock()
	delete(cs.pending, id)
	cs.mu.Unlock()
}

// send sends req, one commit at a time. A Send blocks while the broker
// does not read the stream: when ctx ends before the commit could send,
// the stream is torn down, which ends the Send, so that the next commit
// opens a new one.
func (cs *commitStream) send(ctx context.Context, req *runnelpb.CommitStreamRequest) error {
	select {
	case cs.sendSlot <- struct{}{}:
	case <-ctx.Done():
		// Another commit's Send has been blocked all this time.
		cs.tearDown()
		return ctx.Err()
	}
	defer func() { <-cs.sendSlot }()
	stop := context.AfterFunc(ctx, cs.tearDown)
	err := cs.stream.Send(req)
	if !stop() {
		return ctx.Err()
	}
	return err
}

// commitStreamIdleDefault is how long a commit stream stays open unused.
const commitStreamIdleDefault = 5 * time.Minute

// commitStreamIdle is commitStreamIdleDefault, but tests may set it.
var commitStreamIdle = commitStreamIdleDefault
