package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/runnel-dev/runnel/partition"
	"github.com/runnel-dev/runnel/proto/runnelpb"
	"github.com/runnel-dev/runnel/record"
)

// maxStreamInFlight bounds the produce requests of one stream that are
// ordered but not yet answered; past it the stream stops reading.
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
	acks := toAcks(req.Acks)
	start := time.Now()
	pd, err := p.Append(record.Batch(req.Batch), acks)
	var pnl *partition.NotLeaderError
	if errors.As(err, &pnl) {
		if pnl.LeaderID == "" {
			return pd, acks, errorf(ErrNoLeader, "%s/%d has no leader: a majority of its replicas is not reachable or an election is under way", req.Topic, req.Partition)
		}
		id, _ := strconv.Atoi(pnl.LeaderID)
		return pd, acks, &NotLeaderError{Topic: req.Topic, Partition: req.Partition, LeaderID: int32(id), LeaderAddr: pnl.LeaderAddr}
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
// partition at once; one goroutine waits for each in turn and answers, so a
// stream pipelines its requests while each partition keeps the stream's order.
func (s *service) ProduceStream(stream runnelpb.Broker_ProduceStreamServer) error {
	ctx := stream.Context()
	queue := make(chan inflight, maxStreamInFlight)
	sendErr := make(chan error, 1)
	go func() {
		defer close(sendErr)
		var failed error
		for f := range queue {
			resp := &runnelpb.ProduceResponse{RequestId: f.req.RequestId, Topic: f.req.Topic, Partition: f.req.Partition, BaseOffset: f.pd.Base}
			err, waited := f.err, f.err != nil
			if !waited && f.acks == partition.AcksAll {
				// A replicated partition knows the offset only once the
				// batch is committed; a retried batch gets its first offset.
				resp.BaseOffset, err = f.pd.WaitOffset()
				waited = true
				s.b.met.ackLatency.Observe(time.Since(f.admitted).Seconds())
			}
			if err != nil || f.acks == partition.AcksNone {
				resp.BaseOffset = -1
			}
			if err != nil {
				resp.Error = toProtoError(err)
			}
			if failed == nil {
				if failed = stream.Send(resp); failed != nil {
					sendErr <- failed
				}
			}
			// Every admitted batch is waited for exactly once, answered
			// or not: lower acks are answered first.
			if !waited {
				if err := f.pd.Wait(); err != nil {
					s.b.logger.Warn("append failed after it was acknowledged", "topic", f.req.Topic, "partition", f.req.Partition, "acks", f.acks, "err", err)
				}
			}
		}
	}()

	// Recv blocks, so it runs on its own goroutine; the handler can then
	// also watch the broker closing and end an idle stream at once.
	reqs := make(chan *runnelpb.ProduceRequest)
	recvDone := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvDone <- err
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				recvDone <- ctx.Err()
				return
			}
		}
	}()

	var recvErr error
loop:
	for {
		select {
		case req := <-reqs:
			pd, acks, err := s.admit(req)
			select {
			case queue <- inflight{admitted: time.Now(), req: req, pd: pd, acks: acks, err: err}:
			case <-ctx.Done():
				if err == nil {
					pd.Wait() // admitted batches are always waited for
				}
				recvErr = ctx.Err()
				break loop
			}
		case err := <-recvDone:
			if !errors.Is(err, io.EOF) {
				recvErr = err
			}
			break loop
		case <-s.b.closing:
			recvErr = ErrShuttingDown
			break loop
		}
	}
	close(queue)
	if err := <-sendErr; err != nil {
		return err
	}
	if recvErr != nil && !errors.Is(recvErr, context.Canceled) {
		return toStatus(recvErr)
	}
	return nil
}
