package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// A sink sends the batches of the partitions one broker leads, over one
// ProduceStream at a time. Its goroutine (run) takes batches from the
// partitions on its ready list and sends them; the stream's own goroutine
// (stream.recv) reads the answers, which come with the request_id of their
// request, and resolves or retries the batches.
type sink struct {
	p    *producer
	addr string
	wake chan struct{} // cap 1

	mu    sync.Mutex
	ready []*partProducer
}

func newSink(p *producer, addr string) *sink {
	return &sink{p: p, addr: addr, wake: make(chan struct{}, 1)}
}

// enqueue adds pp to the ready list and wakes the sink.
func (s *sink) enqueue(pp *partProducer) {
	s.mu.Lock()
	s.ready = append(s.ready, pp)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run is the sink's goroutine; it ends when the client closes.
func (s *sink) run() {
	ctx := s.p.c.ctx
	var (
		st     *stream
		ready  []*partProducer
		nextID uint64
	)
	defer func() {
		if st != nil {
			st.fail(ErrClosed)
		}
	}()
	// The broker answers a batch it could not commit within the request's
	// timeout with OUTCOME_UNKNOWN. A broker that stops answering without
	// breaking the stream would hold its batches forever; the watchdog gives
	// up on such a stream when a request is unanswered a grace period after
	// its timeout, and its batches are retried.
	timeout := s.p.c.cfg.requestTimeout
	watchdog := time.NewTicker(min(max(timeout/4, 10*time.Millisecond), time.Second))
	defer watchdog.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-watchdog.C:
			if st != nil {
				st.expire(time.Now())
			}
			continue
		case <-s.wake:
		}
		s.mu.Lock()
		ready, s.ready = s.ready, ready[:0]
		s.mu.Unlock()
		for i, pp := range ready {
			ready[i] = nil
			pp.scheduled.Store(false)
			for {
				b := pp.take(time.Now())
				if b == nil {
					break
				}
				if err := b.ctxDone(); err != nil {
					if b.lastErr != nil {
						// A retry that waited: say what it waited for.
						err = fmt.Errorf("%w (last error: %w)", err, b.lastErr)
					}
					s.p.finish(b, -1, b.wrap(err))
					continue
				}
				if !time.Now().Before(b.deadline) {
					cause := b.lastErr
					if cause == nil {
						cause = context.DeadlineExceeded
					}
					err := fmt.Errorf("not sent within the delivery timeout %v: %w", s.p.c.cfg.deliveryTimeout, cause)
					s.p.finish(b, -1, b.wrap(err))
					continue
				}
				if st == nil || st.isDead() {
					var err error
					if st, err = s.open(ctx); err != nil {
						if isConnectError(err) {
							s.p.c.meta.unreachable(s.addr)
						}
						s.p.retryOrFail(b, err, s.addr)
						break
					}
				}
				nextID++
				st.send(nextID, b)
			}
		}
	}
}

// open starts a ProduceStream to the sink's broker and its reading
// goroutine.
func (s *sink) open(ctx context.Context) (*stream, error) {
	bc, err := s.p.c.conn(s.addr)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	cs, err := bc.ProduceStream(sctx)
	if err != nil {
		cancel()
		return nil, fromStatus(err, s.addr)
	}
	st := &stream{s: s, cs: cs, cancel: cancel, inflight: make(map[uint64]*batch)}
	s.p.c.goFunc(st.recv)
	return st, nil
}

// stream is one ProduceStream and the batches in flight on it. A batch
// belongs to whoever removes it from inflight.
type stream struct {
	s      *sink
	cs     grpc.BidiStreamingClient[runnelpb.ProduceRequest, runnelpb.ProduceResponse]
	cancel context.CancelFunc

	mu       sync.Mutex
	dead     bool
	inflight map[uint64]*batch
}

func (st *stream) isDead() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.dead
}

// send sends b as request id. On failure the stream is torn down and b is
// retried.
func (st *stream) send(id uint64, b *batch) {
	p := st.s.p
	if b.data == nil {
		// The first send fixes the batch's sequence numbers; retries resend
		// the same bytes, so the partition can tell a retry from new data.
		pp := b.pp
		pp.mu.Lock()
		b.b.SetProducer(p.id, pp.epoch, pp.seq)
		pp.seq += int32(b.b.Count())
		pp.mu.Unlock()
		b.data = b.b.Build()
	}
	st.mu.Lock()
	if st.dead {
		st.mu.Unlock()
		p.retryOrFail(b, errStreamBroken(st.s.addr, nil), st.s.addr)
		return
	}
	st.inflight[id] = b
	b.sentAt = time.Now()
	// The broker waits for the batch no longer than the request timeout,
	// nor past the batch's delivery deadline, so the batch's last attempt
	// ends with its delivery timeout.
	b.timeout = max(min(p.c.cfg.requestTimeout, b.deadline.Sub(b.sentAt)), time.Millisecond)
	st.mu.Unlock()
	err := st.cs.Send(&runnelpb.ProduceRequest{
		RequestId: id,
		Topic:     b.pp.topic,
		Partition: b.pp.partition,
		Batch:     b.data,
		Acks:      acksProto(p.c.cfg.acks),
		TimeoutMs: uint32(b.timeout / time.Millisecond),
	})
	if err != nil {
		// The stream is broken; fail retries what was in flight, b
		// included unless recv noticed first and retried it.
		st.mu.Lock()
		_, mine := st.inflight[id]
		delete(st.inflight, id)
		st.mu.Unlock()
		st.fail(errStreamBroken(st.s.addr, nil))
		if mine {
			p.retryOrFail(b, errStreamBroken(st.s.addr, err), st.s.addr)
		}
	}
}

// expire fails the stream when a request is still unanswered at now, a
// grace period after its timeout: a quarter of RequestTimeout, at least 2s.
func (st *stream) expire(now time.Time) {
	grace := max(st.s.p.c.cfg.requestTimeout/4, 2*time.Second)
	st.mu.Lock()
	var late *batch
	for _, b := range st.inflight {
		if now.After(b.sentAt.Add(b.timeout + grace)) {
			late = b
			break
		}
	}
	var waited time.Duration
	if late != nil {
		waited = now.Sub(late.sentAt)
	}
	st.mu.Unlock()
	if late != nil {
		st.fail(&Error{
			Kind:    ErrUnknownOutcome,
			Reason:  "REQUEST_TIMEOUT",
			Message: fmt.Sprintf("broker at %s did not answer a produce request in %v", st.s.addr, waited.Round(time.Millisecond)),
		})
	}
}

// recv reads answers until the stream ends, then retries what was left in
// flight on it.
func (st *stream) recv() {
	p := st.s.p
	for {
		resp, err := st.cs.Recv()
		if err != nil {
			if !st.isDead() {
				st.fail(errStreamBroken(st.s.addr, err))
			}
			return
		}
		p.c.meta.reachable(st.s.addr)
		st.mu.Lock()
		b := st.inflight[resp.GetRequestId()]
		delete(st.inflight, resp.GetRequestId())
		st.mu.Unlock()
		if b == nil {
			continue
		}
		if e := resp.GetError(); e != nil {
			p.retryOrFail(b, fromProto(e), st.s.addr)
			continue
		}
		p.finish(b, resp.GetBaseOffset(), nil)
	}
}

// fail marks the stream dead, ends it, and retries its in-flight batches.
// Unless the client is closing, the broker counts as unreachable for now,
// so the batches of the partitions it leads ask another replica for the
// leader.
func (st *stream) fail(err error) {
	st.mu.Lock()
	st.dead = true
	left := st.inflight
	st.inflight = make(map[uint64]*batch)
	st.mu.Unlock()
	st.cancel()
	if !errors.Is(err, ErrClosed) {
		st.s.p.c.meta.unreachable(st.s.addr)
	}
	for _, b := range left {
		st.s.p.retryOrFail(b, err, st.s.addr)
	}
	if len(left) > 0 {
		st.s.p.c.cfg.logger.Info("runnel client: produce stream ended", "broker", st.s.addr, "in_flight", len(left), "err", err)
	}
}

// errStreamBroken turns the error that ended a produce stream into a
// client error: the broker's status or an unreachable broker as they are,
// anything else (a cancelled or reset stream) as a retriable
// ErrUnavailable.
func errStreamBroken(addr string, err error) error {
	if err != nil {
		e := fromStatus(err, addr)
		var be *Error
		var ce *ConnectError
		if errors.As(e, &be) || errors.As(e, &ce) {
			return e
		}
	}
	return &Error{
		Kind:    ErrUnavailable,
		Reason:  "STREAM_BROKEN",
		Message: fmt.Sprintf("produce stream to %s ended: %v", addr, err),
	}
}

func acksProto(a AcksLevel) runnelpb.Acks {
	switch a {
	case AcksNone:
		return runnelpb.Acks_ACKS_NONE
	case AcksLeader:
		return runnelpb.Acks_ACKS_LEADER
	}
	return runnelpb.Acks_ACKS_ALL
}
