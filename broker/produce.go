package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/runnel-dev/runnel/partition"
	"github.com/runnel-dev/runnel/proto/runnelpb"
	"github.com/runnel-dev/runnel/record"
)

// maxStreamInFlight bounds the produce requests of one stream that are
// ordered and not yet answered and waited for; past it the stream stops
// reading.
const maxStreamInFlight = 256

func toAcks(a runnelpb.Acks) partition.Acks {
	switch a {
	case runnelpb.Acks_ACKS_NONE:
		return partition.AcksNone
	case runnelpb.Acks_ACKS_LEADER:
		return partition.AcksLeader
	default:
		return partition.AcksAll
	}
}

// admit checks a produce request and orders its batch in the partition.
func (s *service) admit(req *runnelpb.ProduceRequest) (partition.Pending, partition.Acks, error) {
	select {
	case <-s.b.closing:
		return partition.Pending{}, 0, ErrShuttingDown
	default:
	}
	t, p, err := s.b.topics.partition(req.Topic, req.Partition)
	if err != nil {
		return partition.Pending{}, 0, err
	}
	if len(req.Batch) > int(t.cfg.MaxMessageBytes) {
		return partition.Pending{}, 0, &BatchTooLargeError{Topic: req.Topic, Partition: req.Partition, Size: len(req.Batch), Limit: int(t.cfg.MaxMessageBytes)}
	}
	if len(req.Batch) == 0 {
		return partition.Pending{}, 0, errorf(ErrInvalidRequest, "produce to %s/%d carries no batch", req.Topic, req.Partition)
	}
	if err := checkBacklog(t, req.Topic, req.Partition, p); err != nil {
		return partition.Pending{}, 0, err
	}
	if err := checkDisk(s.b.disk, p, len(req.Batch)); err != nil {
		return partition.Pending{}, 0, err
	}
	acks := toAcks(req.Acks)
	start := time.Now()
	pd, err := p.Append(record.Batch(req.Batch), acks)
	if nl := notLeader(req.Topic, req.Partition, err); nl != nil {
		return pd, acks, nl
	}
	if err != nil {
		if errors.Is(err, record.ErrCorrupt) || errors.Is(err, record.ErrUnsupported) {
			return pd, acks, fmt.Errorf("batch for %s/%d: %w", req.Topic, req.Partition, err)
		}
		return pd, acks, err
	}
	s.b.met.produced(req.Topic, record.Batch(req.Batch), start)
	return pd, acks, nil
}

func (s *service) Produce(ctx context.Context, req *runnelpb.ProduceRequest) (*runnelpb.ProduceResponse, error) {
	pd, acks, err := s.admit(req)
	if err != nil {
		return nil, toStatus(err)
	}
	// A unary answer leaves when the handler returns, so it waits for the
	// batch whatever the acks; ProduceStream answers lower acks sooner.
	base, err := pd.WaitOffset()
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &runnelpb.ProduceResponse{RequestId: req.RequestId, Topic: req.Topic, Partition: req.Partition, BaseOffset: base}
	if acks == partition.AcksNone {
		resp.BaseOffset = -1
	}
	return resp, nil
}

// inflight is a stream produce request that has been ordered and waits for
// its acknowledgement.
type inflight struct {
	admitted time.Time
	req      *runnelpb.ProduceRequest
	pd       partition.Pending
	acks     partition.Acks
	err      error
}

// ProduceStream reads requests in order and orders each batch in its
// partition at once; for each partition of the stream one goroutine waits
// for its batches in turn and answers, so a stream pipelines its requests,
// each partition keeps the stream's order, and a partition slow to commit
// holds up no other partition's answers. A batch of lower acks is answered
// as soon as it is ordered; another goroutine of the partition then waits
// for it, so its answer does not wait for the batches before it to commit.
func (s *service) ProduceStream(stream runnelpb.Broker_ProduceStreamServer) error {
	ctx := stream.Context()
	a := &answerer{s: s, stream: stream, slots: make(chan struct{}, maxStreamInFlight), queues: map[partKey]partQueues{}}

	// Recv blocks, so requests are read and ordered on a goroutine of
	// their own; the handler watches it end and the broker close, and ends
	// an idle stream at once when the broker closes. Ordering on the
	// reading goroutine saves each batch a hand-over to the handler.
	var (
		admitMu sync.Mutex
		stopped bool // set by the handler: order nothing more
	)
	recvDone := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvDone <- err
				return
			}
			// A slot first, so the stream stops reading while
			// maxStreamInFlight requests wait for their answers.
			select {
			case a.slots <- struct{}{}:
			case <-ctx.Done():
				recvDone <- ctx.Err()
				return
			}
			admitMu.Lock()
			if stopped {
				admitMu.Unlock()
				<-a.slots
				recvDone <- nil
				return
			}
			pd, acks, err := s.admit(req)
			a.add(inflight{admitted: time.Now(), req: req, pd: pd, acks: acks, err: err})
			admitMu.Unlock()
		}
	}()

	var recvErr error
	select {
	case err := <-recvDone:
		if !errors.Is(err, io.EOF) {
			recvErr = err
		}
	case <-s.b.closing:
		recvErr = ErrShuttingDown
	}
	admitMu.Lock()
	stopped = true
	admitMu.Unlock()
	if err := a.close(); err != nil {
		return err
	}
	if recvErr != nil && !errors.Is(recvErr, context.Canceled) {
		return toStatus(recvErr)
	}
	return nil
}

type partKey struct {
	topic     string
	partition int32
}

// partQueues are one partition's requests on their way through a stream's
// answerer: to be answered, then to be waited for.
type partQueues struct {
	answers chan inflight
	waits   chan late
}

// late is a request answered before its batch's outcome was known: the
// rest of its wait, and whether a failure is worth a warning.
type late struct {
	f    inflight
	wait func() error
	warn bool
}

// answerer answers the requests of one ProduceStream: a goroutine per
// partition takes that partition's requests in order, waits for each as
// its acks ask and sends its answer; a second one waits for the batches
// answered before their outcome was known.
type answerer struct {
	s      *service
	stream runnelpb.Broker_ProduceStreamServer
	// slots holds a token for each request admitted and not yet waited for.
	slots chan struct{}
	// queues belongs to the goroutine that calls add, then to close.
	queues  map[partKey]partQueues
	answers sync.WaitGroup
	waits   sync.WaitGroup

	sendMu  sync.Mutex
	sendErr error // the first failed Send; no answers are sent after it
}

// add hands f to its partition's goroutines, starting them on first use.
func (a *answerer) add(f inflight) {
	k := partKey{f.req.Topic, f.req.Partition}
	q, ok := a.queues[k]
	if !ok {
		// Room for every slot, so neither queue ever blocks.
		q = partQueues{answers: make(chan inflight, maxStreamInFlight), waits: make(chan late, maxStreamInFlight)}
		a.queues[k] = q
		a.answers.Add(1)
		go func() {
			defer a.answers.Done()
			for f := range q.answers {
				if l, ok := a.answer(f); ok {
					q.waits <- l
				} else {
					<-a.slots
				}
			}
		}()
		a.waits.Add(1)
		go func() {
			defer a.waits.Done()
			for l := range q.waits {
				if err := l.wait(); err != nil && l.warn {
					a.s.b.logger.Warn("append failed after it was acknowledged", "topic", l.f.req.Topic, "partition", l.f.req.Partition, "acks", l.f.acks, "err", err)
				}
				<-a.slots
			}
		}()
	}
	q.answers <- f
}

// close waits until every request added was answered and waited for, and
// returns the error that failed a Send, if any.
func (a *answerer) close() error {
	for _, q := range a.queues {
		close(q.answers)
	}
	a.answers.Wait()
	for _, q := range a.queues {
		close(q.waits)
	}
	a.waits.Wait()
	return a.sendErr
}

// answer waits for f as its acks ask and sends its answer. Every admitted
// batch is waited for exactly once, answered or not, as Pending asks: when
// the answer left before the batch's outcome was known, answer returns the
// rest of the wait and true.
func (a *answerer) answer(f inflight) (late, bool) {
	s := a.s
	resp := &runnelpb.ProduceResponse{RequestId: f.req.RequestId, Topic: f.req.Topic, Partition: f.req.Partition, BaseOffset: f.pd.Base}
	err := f.err
	var rest late
	switch {
	case err != nil:
	case f.acks == partition.AcksAll:
		// A replicated partition knows the offset only once the batch is
		// committed; a retried batch gets its first offset.
		var wait func() error
		resp.BaseOffset, wait, err = waitOffset(f)
		if wait == nil {
			s.b.met.ackLatency.Observe(time.Since(f.admitted).Seconds())
		} else {
			rest = late{f: f, wait: wait}
		}
	default:
		// Lower acks are answered first.
		rest = late{f: f, wait: f.pd.Wait, warn: true}
	}
	if err != nil || f.acks == partition.AcksNone {
		resp.BaseOffset = -1
	}
	if err != nil {
		resp.Error = toProtoError(err)
	}
	a.sendMu.Lock()
	if a.sendErr == nil {
		a.sendErr = a.stream.Send(resp)
	}
	a.sendMu.Unlock()
	return rest, rest.wait != nil
}

// waitOffset waits for f's batch to commit and returns its base offset,
// but no longer than the request's timeout_ms: past it, it returns an
// OUTCOME_UNKNOWN error, which an idempotent producer's retry resolves, and
// the rest of the wait, which the caller must finish.
func waitOffset(f inflight) (int64, func() error, error) {
	if f.req.TimeoutMs == 0 {
		base, err := f.pd.WaitOffset()
		return base, nil, err
	}
	timeout := time.Duration(f.req.TimeoutMs) * time.Millisecond
	t := time.NewTimer(time.Until(f.admitted.Add(timeout)))
	defer t.Stop()
	unknown := func() error {
		return errorf(ErrOutcomeUnknown, "%s/%d did not commit the batch within the request timeout of %v; retry it (an idempotent producer's retry is written once)",
			f.req.Topic, f.req.Partition, timeout)
	}
	if ready := f.pd.Ready(); ready != nil {
		// The outcome signals itself: wait for it here.
		select {
		case <-ready:
			base, err := f.pd.WaitOffset()
			return base, nil, err
		case <-t.C:
			return -1, f.pd.Wait, unknown()
		}
	}
	var (
		base int64
		err  error
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		base, err = f.pd.WaitOffset()
	}()
	select {
	case <-done:
		return base, nil, err
	case <-t.C:
		return -1, func() error { <-done; return nil }, unknown()
	}
}
