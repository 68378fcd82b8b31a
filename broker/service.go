package broker

import (
	"context"
	"errors"

	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// service implements runnelpb.BrokerServer on top of a Broker.
type service struct {
	runnelpb.UnimplementedBrokerServer
	b *Broker
}

var _ runnelpb.BrokerServer = (*service)(nil)

func (s *service) topicInfo(t *topic) *runnelpb.TopicInfo {
	info := &runnelpb.TopicInfo{Name: t.meta.Name, Configs: t.cfg.effective()}
	for i, a := range t.assign {
		pi := &runnelpb.PartitionInfo{Partition: int32(i), Leader: a.Leader, Replicas: a.Replicas, StartOffset: -1, EndOffset: -1}
		if p := t.parts[i]; p != nil {
			pi.StartOffset, pi.EndOffset = p.Start(), p.End()
		}
		info.Partitions = append(info.Partitions, pi)
	}
	return info
}

// caughtUp fails with ErrCatchingUp while a cluster node has not yet caught
// up with the cluster state, so that calls listing all topics do not answer
// from a stale or empty one: a client would take the topics missing from it
// for deleted. (Calls naming a topic check this in the catalog.)
func (s *service) caughtUp() error {
	if s.b.cluster == nil {
		return nil
	}
	return s.b.cluster.ready()
}

func (s *service) Metadata(ctx context.Context, req *runnelpb.MetadataRequest) (*runnelpb.MetadataResponse, error) {
	if len(req.Topics) == 0 {
		if err := s.caughtUp(); err != nil {
			return nil, toStatus(err)
		}
	}
	nodes, ctrl := s.b.topics.nodes()
	resp := &runnelpb.MetadataResponse{Controller: ctrl}
	for _, n := range nodes {
		resp.Nodes = append(resp.Nodes, &runnelpb.Node{Id: n.ID, Addr: n.Addr, Http: n.HTTP})
	}
	if len(req.Topics) == 0 {
		for _, t := range s.b.topics.list() {
			resp.Topics = append(resp.Topics, s.topicInfo(t))
		}
		return resp, nil
	}
	for _, name := range req.Topics {
		t, err := s.b.topics.get(name)
		if err != nil {
			return nil, toStatus(err)
		}
		resp.Topics = append(resp.Topics, s.topicInfo(t))
	}
	return resp, nil
}

func (s *service) CreateTopic(ctx context.Context, req *runnelpb.CreateTopicRequest) (*runnelpb.CreateTopicResponse, error) {
	replicas := int(req.Replicas) // 0: the catalog's default
	partitions := int(req.Partitions)
	if partitions == 0 {
		partitions = 1
	}
	t, err := s.b.topics.create(ctx, req.Name, partitions, replicas, req.Configs)
	if err != nil {
		return nil, toStatus(err)
	}
	s.b.logger.Info("topic created", "topic", req.Name, "partitions", partitions)
	return &runnelpb.CreateTopicResponse{Topic: s.topicInfo(t)}, nil
}

func (s *service) DeleteTopic(ctx context.Context, req *runnelpb.DeleteTopicRequest) (*runnelpb.DeleteTopicResponse, error) {
	if err := s.b.topics.delete(ctx, req.Name); err != nil {
		return nil, toStatus(err)
	}
	s.b.logger.Info("topic deleted", "topic", req.Name)
	return &runnelpb.DeleteTopicResponse{}, nil
}

func (s *service) ListTopics(ctx context.Context, req *runnelpb.ListTopicsRequest) (*runnelpb.ListTopicsResponse, error) {
	if err := s.caughtUp(); err != nil {
		return nil, toStatus(err)
	}
	resp := &runnelpb.ListTopicsResponse{}
	for _, t := range s.b.topics.list() {
		resp.Topics = append(resp.Topics, s.topicInfo(t))
	}
	return resp, nil
}

func (s *service) DescribeTopic(ctx context.Context, req *runnelpb.DescribeTopicRequest) (*runnelpb.DescribeTopicResponse, error) {
	t, err := s.b.topics.get(req.Name)
	if err != nil {
		return nil, toStatus(err)
	}
	return &runnelpb.DescribeTopicResponse{Topic: s.topicInfo(t)}, nil
}

func (s *service) AlterTopicConfigs(ctx context.Context, req *runnelpb.AlterTopicConfigsRequest) (*runnelpb.AlterTopicConfigsResponse, error) {
	t, err := s.b.topics.alter(ctx, req.Name, req.Set, req.Delete)
	if err != nil {
		return nil, toStatus(err)
	}
	s.b.logger.Info("topic configs altered", "topic", req.Name, "set", req.Set, "delete", req.Delete)
	return &runnelpb.AlterTopicConfigsResponse{Topic: s.topicInfo(t)}, nil
}

func (s *service) ListOffsets(ctx context.Context, req *runnelpb.ListOffsetsRequest) (*runnelpb.ListOffsetsResponse, error) {
	_, p, err := s.b.topics.partition(req.Topic, req.Partition)
	if err != nil {
		return nil, toStatus(err)
	}
	if lead, ok := p.(leaderOnly); ok {
		if err := lead.checkReadable(req.Topic, req.Partition); err != nil {
			return nil, toStatus(err)
		}
	}
	off, err := resolvePosition(req.Topic, req.Partition, p, req.At)
	if err != nil {
		return nil, toStatus(err)
	}
	return &runnelpb.ListOffsetsResponse{Offset: off, StartOffset: p.Start(), EndOffset: p.End()}, nil
}

// resolvePosition turns a Position into an offset within [Start, End].
func resolvePosition(topic string, part int32, p replica, pos *runnelpb.Position) (int64, error) {
	if pos == nil {
		return p.Start(), nil
	}
	switch at := pos.At.(type) {
	case nil:
		return p.Start(), nil
	case *runnelpb.Position_Start:
		return p.Start(), nil
	case *runnelpb.Position_End:
		return p.End(), nil
	case *runnelpb.Position_TimestampMs:
		return p.OffsetForTime(at.TimestampMs)
	case *runnelpb.Position_Offset:
		start, end := p.Start(), p.End()
		if at.Offset < start || at.Offset > end {
			return 0, &OffsetOutOfRangeError{Topic: topic, Partition: part, Offset: at.Offset, Start: start, End: end}
		}
		return at.Offset, nil
	default:
		return 0, errorf(ErrInvalidRequest, "unknown position %T", at)
	}
}

// outOfRange adds the topic and partition to a log range error.
func outOfRange(topic string, part int32, err error) error {
	var e *log.OutOfRangeError
	if errors.As(err, &e) {
		return &OffsetOutOfRangeError{Topic: topic, Partition: part, Offset: e.Offset, Start: e.Start, End: e.End}
	}
	return err
}
