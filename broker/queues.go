package broker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/runnel-dev/runnel/consumergroup"
	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/partition"
	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// maxLeaseWait bounds how long one Lease call long-polls.
const maxLeaseWait = time.Minute

// queueReplica is what the queue service needs of a partition: a
// *partition.Replica in a cluster, a *partition.Partition on one node.
type queueReplica interface {
	Lease(ctx context.Context, req partition.LeaseRequest, wait time.Duration) ([]partition.LeasedRecord, error)
	Settle(group string, ops []consumergroup.Settle) ([]error, error)
	ResetQueue(group string, off int64) error
	DeleteQueue(group string) error
	QueueGroups(group string) ([]partition.QueueGroupInfo, error)
	QueueBacklog() (records int64, group string)
}

// leaderReplica is a replica that has a leader elsewhere at times: only
// the leader's queue state is current.
type leaderReplica interface {
	IsLeader() bool
	Leader() (partition.Server, bool)
}

var (
	_ queueReplica = (*partition.Replica)(nil)
	// A cluster's replicas are *hostedReplica, which embeds the Replica.
	_ leaderReplica = (*hostedReplica)(nil)
	_ queueReplica  = (*partition.Partition)(nil)
)

// queuesService serves the Queues API of queues.proto.
type queuesService struct {
	runnelpb.UnimplementedQueuesServer
	b *Broker
}

// queuePartition finds the local replica of topic/part for a queue call.
// Only the leader's queue state is current, so a replica that does not
// lead refuses every call with the leader's address before anything is
// read from it.
func (s *queuesService) queuePartition(topic string, part int32) (replica, queueReplica, error) {
	select {
	case <-s.b.closing:
		return nil, nil, ErrShuttingDown
	default:
	}
	_, p, err := s.b.topics.partition(topic, part)
	if err != nil {
		return nil, nil, err
	}
	q, ok := p.(queueReplica)
	if !ok {
		return nil, nil, errorf(ErrInvalidRequest, "%s/%d does not serve queue groups", topic, part)
	}
	if r, ok := p.(leaderReplica); ok && !r.IsLeader() {
		l, _ := r.Leader() // an unknown leader has no ID: NO_LEADER
		return nil, nil, notLeader(topic, part, &partition.NotLeaderError{LeaderID: l.ID, LeaderAddr: l.Addr})
	}
	return p, q, nil
}

// queueErr turns the partition's not-leader and range errors into the
// broker's, and names the partition by its topic in any other error (the
// partition's own messages know only the topic's internal id).
func queueErr(topic string, part int32, err error) error {
	if nl := notLeader(topic, part, err); nl != nil {
		return nl
	}
	switch {
	case errors.Is(err, log.ErrOffsetOutOfRange):
		// The log's range error, or the broker's, which names the
		// partition already.
		return outOfRange(topic, part, err)
	case errors.Is(err, ErrShuttingDown), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return fmt.Errorf("%s/%d: %w", topic, part, err)
}

func (s *queuesService) Lease(ctx context.Context, req *runnelpb.LeaseRequest) (*runnelpb.LeaseResponse, error) {
	_, q, err := s.queuePartition(req.Topic, req.Partition)
	if err != nil {
		return nil, toStatus(err)
	}
	wait := min(time.Duration(max(req.WaitMs, 0))*time.Millisecond, maxLeaseWait)
	if wait > 0 {
		// A long poll ends when the broker closes.
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-s.b.closing:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	recs, err := q.Lease(ctx, partition.LeaseRequest{
		Group:      req.Group,
		Config:     consumergroup.QueueConfig{KeyOrdering: req.KeyOrdering},
		Max:        int(req.Max),
		Visibility: time.Duration(req.VisibilityMs) * time.Millisecond,
	}, wait)
	if err != nil {
		select {
		case <-s.b.closing:
			err = ErrShuttingDown
		default:
		}
		return nil, toStatus(queueErr(req.Topic, req.Partition, err))
	}
	if cerr := ctx.Err(); cerr != nil && len(recs) > 0 {
		// The caller gave up (a consumer closing cancels its long poll)
		// while the lease was being made: no one will see these records,
		// so they go back at once rather than at the lease's end, without
		// counting a delivery.
		ops := make([]consumergroup.Settle, len(recs))
		for i, r := range recs {
			ops[i] = consumergroup.Settle{Kind: consumergroup.Release, Offset: r.Offset, Attempt: r.Attempt, Duration: r.Deadline.UnixMilli(), Lease: r.Lease}
		}
		if _, err := q.Settle(req.Group, ops); err != nil {
			s.b.logger.Debug("release a lease nobody waits for", "topic", req.Topic, "partition", req.Partition, "group", req.Group, "err", err)
		}
		return nil, toStatus(cerr)
	}
	resp := &runnelpb.LeaseResponse{Deliveries: make([]*runnelpb.Delivery, len(recs))}
	for i, r := range recs {
		d := &runnelpb.Delivery{
			Offset:       r.Offset,
			Attempt:      int32(r.Attempt),
			LeaseUntilMs: r.Deadline.UnixMilli(),
			Key:          r.Key,
			Value:        r.Value,
			TimestampMs:  r.Timestamp,
			Lease:        r.Lease,
		}
		if len(r.Headers) > 0 {
			d.Headers = make([]*runnelpb.QueueHeader, len(r.Headers))
			for j, h := range r.Headers {
				d.Headers[j] = &runnelpb.QueueHeader{Key: h.Key, Value: h.Value}
			}
		}
		resp.Deliveries[i] = d
	}
	return resp, nil
}

func (s *queuesService) Settle(ctx context.Context, req *runnelpb.SettleRequest) (*runnelpb.SettleResponse, error) {
	_, q, err := s.queuePartition(req.Topic, req.Partition)
	if err != nil {
		return nil, toStatus(err)
	}
	ops := make([]consumergroup.Settle, len(req.Ops))
	for i, op := range req.Ops {
		if op.Kind < runnelpb.SettleKind_SETTLE_KIND_ACK || op.Kind > runnelpb.SettleKind_SETTLE_KIND_RELEASE {
			return nil, toStatus(errorf(ErrInvalidRequest, "settle of %s/%d offset %d: unknown kind %d; update the client", req.Topic, req.Partition, op.Offset, op.Kind))
		}
		ops[i] = consumergroup.Settle{Kind: consumergroup.SettleKind(op.Kind), Offset: op.Offset, Attempt: int(op.Attempt), Duration: op.DurationMs, Lease: op.Lease}
		if op.Kind == runnelpb.SettleKind_SETTLE_KIND_RELEASE {
			ops[i].Duration = op.LeaseUntilMs
		}
	}
	errs, err := q.Settle(req.Group, ops)
	if err != nil {
		return nil, toStatus(queueErr(req.Topic, req.Partition, err))
	}
	resp := &runnelpb.SettleResponse{Results: make([]*runnelpb.SettleResult, len(errs))}
	for i, e := range errs {
		r := &runnelpb.SettleResult{}
		switch {
		case e == nil:
		case errors.Is(e, consumergroup.ErrSettled):
			r.Outcome, r.Message = runnelpb.SettleOutcome_SETTLE_OUTCOME_SETTLED, e.Error()
		default:
			r.Outcome, r.Message = runnelpb.SettleOutcome_SETTLE_OUTCOME_LEASE_LOST, e.Error()
		}
		resp.Results[i] = r
	}
	return resp, nil
}

func (s *queuesService) SeekQueue(ctx context.Context, req *runnelpb.SeekQueueRequest) (*runnelpb.SeekQueueResponse, error) {
	p, q, err := s.queuePartition(req.Topic, req.Partition)
	if err != nil {
		return nil, toStatus(err)
	}
	off, err := resolvePosition(req.Topic, req.Partition, p, req.To)
	if err != nil {
		return nil, toStatus(queueErr(req.Topic, req.Partition, err))
	}
	if err := q.ResetQueue(req.Group, off); err != nil {
		return nil, toStatus(queueErr(req.Topic, req.Partition, err))
	}
	return &runnelpb.SeekQueueResponse{Offset: off}, nil
}

func (s *queuesService) DescribeQueue(ctx context.Context, req *runnelpb.DescribeQueueRequest) (*runnelpb.DescribeQueueResponse, error) {
	p, q, err := s.queuePartition(req.Topic, req.Partition)
	if err != nil {
		return nil, toStatus(err)
	}
	groups, err := q.QueueGroups(req.Group)
	if err != nil {
		return nil, toStatus(queueErr(req.Topic, req.Partition, err))
	}
	resp := &runnelpb.DescribeQueueResponse{}
	for _, g := range groups {
		resp.Groups = append(resp.Groups, &runnelpb.QueuePartition{
			Group:         g.Group,
			Topic:         req.Topic,
			Partition:     req.Partition,
			KeyOrdering:   g.Config.KeyOrdering,
			StartOffset:   g.Start,
			NextOffset:    g.Next,
			EndOffset:     p.End(),
			Leased:        int32(g.Leased),
			Delayed:       int32(g.Delayed),
			Ready:         int32(g.Ready),
			Blocked:       int32(g.Blocked),
			MaxDeliveries: int32(g.MaxDeliveries),
		})
	}
	if req.Group != "" && len(resp.Groups) == 0 {
		return nil, toStatus(&GroupNotFoundError{Group: req.Group})
	}
	return resp, nil
}

func (s *queuesService) DeleteQueue(ctx context.Context, req *runnelpb.DeleteQueueRequest) (*runnelpb.DeleteQueueResponse, error) {
	_, q, err := s.queuePartition(req.Topic, req.Partition)
	if err != nil {
		return nil, toStatus(err)
	}
	if err := q.DeleteQueue(req.Group); err != nil {
		return nil, toStatus(queueErr(req.Topic, req.Partition, err))
	}
	return &runnelpb.DeleteQueueResponse{}, nil
}

// BacklogFullError refuses a produce to a partition whose slowest queue
// group is more than the topic's max.backlog.records behind its end.
type BacklogFullError struct {
	Topic      string
	Partition  int32
	Group      string
	Backlog    int64
	Limit      int64
	RetryAfter time.Duration
}

func (e *BacklogFullError) Error() string {
	return fmt.Sprintf("%s/%d has %d records not yet settled by queue group %q, reaching the topic's %s of %d; retry once its consumers catch up, or raise the limit with: runnel topic alter %s --config %s=N",
		e.Topic, e.Partition, e.Backlog, e.Group, ConfigMaxBacklogRecords, e.Limit, e.Topic, ConfigMaxBacklogRecords)
}

// backlogRetry is the retry delay a BacklogFullError asks for, between
// half and all of it (the jitter spreads the producers' retries).
const backlogRetry = 500 * time.Millisecond

// checkBacklog refuses a produce to p when the topic bounds the backlog of
// its queue groups and p's slowest group is over the bound. A replica that
// does not lead is not checked: its append refuses the produce with the
// leader's address, which sends the client there, where a backlog refusal
// asking it to retry would keep it on this node.
func checkBacklog(t *topic, name string, part int32, p replica) error {
	if t.cfg.MaxBacklogRecords < 0 {
		return nil
	}
	if r, ok := p.(leaderReplica); ok && !r.IsLeader() {
		return nil
	}
	q, ok := p.(queueReplica)
	if !ok {
		return nil
	}
	n, group := q.QueueBacklog()
	if n < t.cfg.MaxBacklogRecords {
		return nil
	}
	return &BacklogFullError{Topic: name, Partition: part, Group: group, Backlog: n, Limit: t.cfg.MaxBacklogRecords,
		RetryAfter: backlogRetry/2 + rand.N(backlogRetry/2)}
}
