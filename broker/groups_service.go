package broker

import (
	"context"
	"errors"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/runnel-dev/runnel/consumergroup"
	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// groupsService implements runnelpb.GroupsServer on the node's coordinator.
type groupsService struct {
	runnelpb.UnimplementedGroupsServer
	b *Broker
}

var _ runnelpb.GroupsServer = (*groupsService)(nil)

// coordinator returns the node's coordinator, or the error that sends the
// caller to the node that has it.
func (s *groupsService) coordinator() (*coordinator, error) {
	if s.b.cluster != nil {
		return s.b.cluster.coordinator()
	}
	return s.b.groups, nil
}

func (s *groupsService) GroupSession(stream runnelpb.Groups_GroupSessionServer) error {
	c, err := s.coordinator()
	if err != nil {
		return toStatus(err)
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	j := first.GetJoin()
	if j == nil {
		return toStatus(errorf(ErrInvalidRequest, "a group session starts with a join"))
	}
	sess, _, err := c.join(joinArgs{
		group: j.Group, memberID: j.MemberId, clientID: j.ClientId, topics: j.Topics, strategy: j.Strategy,
		sessionTimeout: time.Duration(j.SessionTimeoutMs) * time.Millisecond, owned: fromPBPartitions(j.Owned), ownedSince: j.Generation,
	})
	if err != nil {
		return toStatus(err)
	}
	defer c.leave(sess)
	timeout := time.Duration(j.SessionTimeoutMs) * time.Millisecond
	if timeout == 0 {
		timeout = defaultSessionTimeout
	}
	interval := (timeout / 3).Milliseconds()
	send := func() error {
		asg, changed, ok := c.assignment(sess)
		if !ok {
			return toStatus(unknownMember(sess.group, sess.member))
		}
		if !changed {
			return nil
		}
		return stream.Send(&runnelpb.GroupAssignment{
			MemberId: sess.member, Generation: asg.Generation, HeartbeatIntervalMs: interval,
			Assigned: toPBPartitions(asg.Assigned), Revoking: toPBPartitions(asg.Revoking),
		})
	}
	if err := send(); err != nil {
		return err
	}
	type recvd struct {
		m   *runnelpb.GroupSessionRequest
		err error
	}
	in := make(chan recvd, 1)
	go func() {
		for {
			m, err := stream.Recv()
			select {
			case in <- recvd{m, err}:
			case <-stream.Context().Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		select {
		case r := <-in:
			if errors.Is(r.err, io.EOF) {
				return nil // a clean exit: the deferred leave hands its partitions on at once
			}
			if r.err != nil {
				return r.err
			}
			hb := r.m.GetHeartbeat()
			if hb == nil {
				return toStatus(errorf(ErrInvalidRequest, "group %s: a session sends one join, then heartbeats", sess.group))
			}
			if _, err := c.heartbeat(sess.group, sess.member, fromPBPartitions(hb.Owned)); err != nil {
				return toStatus(err)
			}
			if err := send(); err != nil {
				return err
			}
		case <-sess.notify:
			if err := send(); err != nil {
				return err
			}
		case <-c.done:
			return toStatus(c.stoppedErr())
		case <-stream.Context().Done():
			return stream.Context().Err()
		case <-s.b.closing:
			return toStatus(errorf(ErrShuttingDown, "node %d is shutting down; join the group again on another node", s.b.opts.NodeID))
		}
	}
}

func (s *groupsService) CommitOffsets(ctx context.Context, req *runnelpb.CommitOffsetsRequest) (*runnelpb.CommitOffsetsResponse, error) {
	if err := s.commit(ctx, req); err != nil {
		return nil, toStatus(err)
	}
	return &runnelpb.CommitOffsetsResponse{}, nil
}

// maxStreamCommits bounds the commits of one CommitStream that wait to be
// durable; past it the stream reads no more until one is answered.
const maxStreamCommits = 4096

// CommitStream commits each request as CommitOffsets would, concurrently,
// and answers each once it is durable or refused.
func (s *groupsService) CommitStream(stream runnelpb.Groups_CommitStreamServer) error {
	ctx := stream.Context()
	var (
		wg      sync.WaitGroup
		sendMu  sync.Mutex
		sendErr error
		slots   = make(chan struct{}, maxStreamCommits)
	)
	// Answers are sent by the goroutines of their commits, so the handler
	// returns only once none is left.
	defer wg.Wait()
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			resp := &runnelpb.CommitStreamResponse{RequestId: req.GetRequestId()}
			if err := s.commit(ctx, req.GetCommit()); err != nil {
				resp.Error = toProtoError(err)
			}
			sendMu.Lock()
			defer sendMu.Unlock()
			if sendErr == nil {
				// A failed send means the stream is gone: the client
				// learns of its commits from the broken stream.
				sendErr = stream.Send(resp)
			}
		}()
	}
}

func (s *groupsService) commit(ctx context.Context, req *runnelpb.CommitOffsetsRequest) error {
	if req == nil {
		return errorf(ErrInvalidRequest, "a commit stream request without a commit")
	}
	c, err := s.coordinator()
	if err != nil {
		return err
	}
	offs := make([]offsetCommit, 0, len(req.Offsets))
	for _, o := range req.Offsets {
		offs = append(offs, offsetCommit{tp: tp{Topic: o.Topic, Partition: o.Partition}, offset: o.Offset})
	}
	return c.commit(ctx, req.Group, req.MemberId, req.Generation, offs)
}

func (s *groupsService) FetchOffsets(ctx context.Context, req *runnelpb.FetchOffsetsRequest) (*runnelpb.FetchOffsetsResponse, error) {
	c, err := s.coordinator()
	if err != nil {
		return nil, toStatus(err)
	}
	if err := validateGroupName(req.Group); err != nil {
		return nil, toStatus(err)
	}
	return &runnelpb.FetchOffsetsResponse{Offsets: toPBOffsets(c.store.offsets(req.Group))}, nil
}

func (s *groupsService) ListGroups(ctx context.Context, req *runnelpb.ListGroupsRequest) (*runnelpb.ListGroupsResponse, error) {
	c, err := s.coordinator()
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &runnelpb.ListGroupsResponse{}
	for _, name := range c.list() {
		v, _ := c.describe(name)
		resp.Groups = append(resp.Groups, &runnelpb.GroupSummary{Group: name, State: v.state(), Members: int32(len(v.members))})
	}
	return resp, nil
}

func (s *groupsService) DescribeGroup(ctx context.Context, req *runnelpb.DescribeGroupRequest) (*runnelpb.DescribeGroupResponse, error) {
	c, err := s.coordinator()
	if err != nil {
		return nil, toStatus(err)
	}
	if err := validateGroupName(req.Group); err != nil {
		return nil, toStatus(err)
	}
	v, ok := c.describe(req.Group)
	if !ok {
		return nil, toStatus(&GroupNotFoundError{Group: req.Group})
	}
	resp := &runnelpb.DescribeGroupResponse{Group: v.name, State: v.state(), Strategy: v.strategy, Generation: v.generation}
	owners := map[tp]string{}
	for _, m := range v.members {
		resp.Members = append(resp.Members, &runnelpb.GroupMember{
			MemberId: m.ID, ClientId: m.ClientID, Topics: m.Topics,
			Assigned: toPBPartitions(m.Assigned), Revoking: toPBPartitions(m.Revoking),
		})
		for _, p := range append(slices.Clone(m.Assigned), m.Revoking...) {
			owners[p] = m.ID
		}
	}
	// Every partition of the topics the group reads or has offsets for.
	topics := map[string]bool{}
	for _, t := range v.topics {
		topics[t] = true
	}
	for p := range v.offsets {
		topics[p.Topic] = true
	}
	for _, name := range slices.Sorted(maps.Keys(topics)) {
		n := s.b.partitionCount(name)
		for p := range n {
			part := tp{Topic: name, Partition: p}
			gp := &runnelpb.GroupPartition{Topic: name, Partition: p, CommittedOffset: -1, EndOffset: -1, Lag: -1, MemberId: owners[part]}
			committed, hasCommit := v.offsets[part]
			if hasCommit {
				gp.CommittedOffset = committed
			}
			// The end offset is known here when this node hosts the
			// partition; the client asks the leaders for the others.
			if _, r, err := s.b.topics.partition(name, p); err == nil {
				gp.EndOffset = r.End()
				from := r.Start()
				if hasCommit {
					from = committed
				}
				gp.Lag = max(gp.EndOffset-from, 0)
			}
			resp.Partitions = append(resp.Partitions, gp)
		}
	}
	return resp, nil
}

func (s *groupsService) SeekGroup(ctx context.Context, req *runnelpb.SeekGroupRequest) (*runnelpb.SeekGroupResponse, error) {
	c, err := s.coordinator()
	if err != nil {
		return nil, toStatus(err)
	}
	offs := map[tp]int64{}
	for _, o := range req.Offsets {
		if o.Offset < 0 {
			return nil, toStatus(errorf(ErrInvalidRequest, "seek of group %s: offset %d for %s/%d; use 0 or more", req.Group, o.Offset, o.Topic, o.Partition))
		}
		n := s.b.partitionCount(o.Topic)
		if n == 0 {
			return nil, toStatus(&TopicNotFoundError{Topic: o.Topic})
		}
		if o.Partition < 0 || o.Partition >= n {
			return nil, toStatus(&PartitionNotFoundError{Topic: o.Topic, Partition: o.Partition, Partitions: int(n)})
		}
		offs[tp{Topic: o.Topic, Partition: o.Partition}] = o.Offset
	}
	if len(offs) == 0 {
		return nil, toStatus(errorf(ErrInvalidRequest, "seek of group %s names no partition", req.Group))
	}
	if err := c.seek(ctx, req.Group, offs); err != nil {
		return nil, toStatus(err)
	}
	return &runnelpb.SeekGroupResponse{}, nil
}

func (s *groupsService) DeleteGroup(ctx context.Context, req *runnelpb.DeleteGroupRequest) (*runnelpb.DeleteGroupResponse, error) {
	c, err := s.coordinator()
	if err != nil {
		return nil, toStatus(err)
	}
	if err := c.deleteGroup(ctx, req.Group); err != nil {
		return nil, toStatus(err)
	}
	return &runnelpb.DeleteGroupResponse{}, nil
}

// state is "stable", "rebalancing" or "empty".
func (v groupView) state() string {
	if len(v.members) == 0 {
		return "empty"
	}
	if v.rebalancing {
		return "rebalancing"
	}
	return "stable"
}

func toPBPartitions(ps []consumergroup.TopicPartition) []*runnelpb.TopicPartition {
	out := make([]*runnelpb.TopicPartition, len(ps))
	for i, p := range ps {
		out[i] = &runnelpb.TopicPartition{Topic: p.Topic, Partition: p.Partition}
	}
	return out
}

func fromPBPartitions(ps []*runnelpb.TopicPartition) []consumergroup.TopicPartition {
	out := make([]consumergroup.TopicPartition, len(ps))
	for i, p := range ps {
		out[i] = consumergroup.TopicPartition{Topic: p.GetTopic(), Partition: p.GetPartition()}
	}
	return out
}

func toPBOffsets(offs map[tp]int64) []*runnelpb.PartitionOffset {
	keys := slices.SortedFunc(maps.Keys(offs), func(a, b tp) int {
		if a.Topic != b.Topic {
			if a.Topic < b.Topic {
				return -1
			}
			return 1
		}
		return int(a.Partition - b.Partition)
	})
	out := make([]*runnelpb.PartitionOffset, len(keys))
	for i, k := range keys {
		out[i] = &runnelpb.PartitionOffset{Topic: k.Topic, Partition: k.Partition, Offset: offs[k]}
	}
	return out
}
