package client

import (
	"context"
	"slices"
	"sync"

	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// CreateTopic creates a topic with the given partitions, replicas (0 for
// the broker's default) and configs, and returns it as created. It fails
// with ErrAlreadyExists when the topic exists and ErrInvalidArgument for a
// bad name, count or config.
func (c *Client) CreateTopic(ctx context.Context, name string, partitions, replicas int, configs map[string]string) (TopicInfo, error) {
	var resp *runnelpb.CreateTopicResponse
	err := c.call(ctx, "", func(ctx context.Context, b runnelpb.BrokerClient) (err error) {
		resp, err = b.CreateTopic(ctx, &runnelpb.CreateTopicRequest{
			Name: name, Partitions: int32(partitions), Replicas: int32(replicas), Configs: configs,
		})
		return err
	})
	if err != nil {
		return TopicInfo{}, err
	}
	c.meta.refresh()
	return topicInfo(resp.GetTopic()), nil
}

// DeleteTopic deletes a topic and all its records. It fails with
// ErrNotFound when there is no such topic.
func (c *Client) DeleteTopic(ctx context.Context, name string) error {
	err := c.call(ctx, "", func(ctx context.Context, b runnelpb.BrokerClient) error {
		_, err := b.DeleteTopic(ctx, &runnelpb.DeleteTopicRequest{Name: name})
		return err
	})
	if err == nil {
		c.meta.refresh()
	}
	return err
}

// ListTopics returns all topics, sorted by name, with their partitions.
func (c *Client) ListTopics(ctx context.Context) ([]TopicInfo, error) {
	var resp *runnelpb.ListTopicsResponse
	err := c.call(ctx, "", func(ctx context.Context, b runnelpb.BrokerClient) (err error) {
		resp, err = b.ListTopics(ctx, &runnelpb.ListTopicsRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]TopicInfo, 0, len(resp.GetTopics()))
	for _, t := range resp.GetTopics() {
		out = append(out, topicInfo(t))
	}
	slices.SortFunc(out, func(a, b TopicInfo) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out, nil
}

// DescribeTopic returns a topic's partitions with their leaders, replicas
// and offsets, and its effective configs. It fails with ErrNotFound when
// there is no such topic. The offsets are the answering node's, which may
// hold a follower's copy that trails the leader's; LeaderOffsets replaces
// them with the leaders'.
func (c *Client) DescribeTopic(ctx context.Context, name string) (TopicInfo, error) {
	var resp *runnelpb.DescribeTopicResponse
	err := c.call(ctx, "", func(ctx context.Context, b runnelpb.BrokerClient) (err error) {
		resp, err = b.DescribeTopic(ctx, &runnelpb.DescribeTopicRequest{Name: name})
		return err
	})
	if err != nil {
		return TopicInfo{}, err
	}
	return topicInfo(resp.GetTopic()), nil
}

// leaderOffsetsConcurrency bounds the ListOffsets calls LeaderOffsets makes
// at once.
const leaderOffsetsConcurrency = 16

// LeaderOffsets replaces the start and end offsets of t's partitions with
// their leaders' (ListOffsets), for those whose leader answers within ctx;
// the others keep theirs. It makes one call per partition, so give ctx a
// deadline: while a partition has no leader, its call retries until then.
func (c *Client) LeaderOffsets(ctx context.Context, t *TopicInfo) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, leaderOffsetsConcurrency)
	for i := range t.Partitions {
		p := &t.Partitions[i]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if o, err := c.ListOffsets(ctx, t.Name, p.Partition, End()); err == nil {
				p.StartOffset, p.EndOffset = o.Start, o.End
			}
		}()
	}
	wg.Wait()
}

// AlterTopicConfigs sets the configs in set and returns those named in del
// to their defaults. It returns the topic as altered.
func (c *Client) AlterTopicConfigs(ctx context.Context, name string, set map[string]string, del []string) (TopicInfo, error) {
	var resp *runnelpb.AlterTopicConfigsResponse
	err := c.call(ctx, "", func(ctx context.Context, b runnelpb.BrokerClient) (err error) {
		resp, err = b.AlterTopicConfigs(ctx, &runnelpb.AlterTopicConfigsRequest{Name: name, Set: set, Delete: del})
		return err
	})
	if err != nil {
		return TopicInfo{}, err
	}
	return topicInfo(resp.GetTopic()), nil
}

// Offsets is what ListOffsets returns.
type Offsets struct {
	// Offset is the offset the position resolved to.
	Offset int64
	// Start is the first offset still in the log; End the offset the next
	// record will get.
	Start, End int64
}

// ListOffsets resolves a position of topic/partition to an offset: Start
// and End to the log's bounds, an Offset to itself (after checking it is in
// range), a Time to the first record at or after it (End when there is
// none). The partition's leader answers: a follower's copy can trail it.
// The call follows a change of leader by itself, within ctx.
func (c *Client) ListOffsets(ctx context.Context, topic string, partition int32, at Position) (Offsets, error) {
	var resp *runnelpb.ListOffsetsResponse
	err := c.callLeader(ctx, topic, partition, func(ctx context.Context, b runnelpb.BrokerClient) (err error) {
		resp, err = b.ListOffsets(ctx, &runnelpb.ListOffsetsRequest{Topic: topic, Partition: partition, At: at.proto()})
		return err
	})
	if err != nil {
		return Offsets{}, err
	}
	return Offsets{Offset: resp.GetOffset(), Start: resp.GetStartOffset(), End: resp.GetEndOffset()}, nil
}
