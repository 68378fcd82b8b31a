package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// QueueGroupPartition is the state of a queue group on one partition, as
// the partition's leader has it.
type QueueGroupPartition struct {
	Group       string
	Topic       string
	Partition   int32
	KeyOrdering bool
	// Start is the offset below which every record is settled; Next the
	// first record the group has not looked at; End the partition's end.
	Start, Next, End int64
	// Leased counts records leased and not expired, Delayed records
	// waiting for a nack's delay or a deliver-at time, Ready records
	// available now, Blocked records waiting for an earlier record with
	// their key.
	Leased, Delayed, Ready, Blocked int
	// MaxDeliveries is the largest delivery count of an unsettled record.
	MaxDeliveries int
}

// Backlog returns the records not settled yet: End - Start.
func (p QueueGroupPartition) Backlog() int64 { return p.End - p.Start }

// QueueGroups returns the state of queue group group, or of every queue
// group when group is "", on every partition of every topic, sorted by
// group, topic and partition. It asks each partition's leader.
func (c *Client) QueueGroups(ctx context.Context, group string) ([]QueueGroupPartition, error) {
	topics, err := c.ListTopics(ctx)
	if err != nil {
		return nil, err
	}
	var out []QueueGroupPartition
	for _, t := range topics {
		for _, p := range t.Partitions {
			var resp *runnelpb.DescribeQueueResponse
			err := c.queueCall(ctx, t.Name, p.Partition, 0, func(ctx context.Context, qc runnelpb.QueuesClient) (err error) {
				resp, err = qc.DescribeQueue(ctx, &runnelpb.DescribeQueueRequest{Group: group, Topic: t.Name, Partition: p.Partition})
				return err
			})
			if errors.Is(err, ErrNotFound) {
				continue // no such group here, or the topic went away
			}
			if err != nil {
				return nil, fmt.Errorf("queue groups on %s/%d: %w", t.Name, p.Partition, err)
			}
			for _, g := range resp.Groups {
				out = append(out, QueueGroupPartition{
					Group: g.Group, Topic: g.Topic, Partition: g.Partition, KeyOrdering: g.KeyOrdering,
					Start: g.StartOffset, Next: g.NextOffset, End: g.EndOffset,
					Leased: int(g.Leased), Delayed: int(g.Delayed), Ready: int(g.Ready), Blocked: int(g.Blocked),
					MaxDeliveries: int(g.MaxDeliveries),
				})
			}
		}
	}
	slices.SortFunc(out, func(a, b QueueGroupPartition) int {
		return cmp.Or(cmp.Compare(a.Group, b.Group), cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	return out, nil
}

// SeekQueueGroup moves queue group group on topic (every topic it has
// state on, when topic is "") to a position, resolved per partition:
// records from there on are delivered again, those before count as
// settled, and current leases are lost. Consumers may keep running.
func (c *Client) SeekQueueGroup(ctx context.Context, group, topic string, to Position) error {
	var topics []string
	if topic != "" {
		topics = []string{topic}
	} else {
		parts, err := c.QueueGroups(ctx, group)
		if err != nil {
			return err
		}
		for _, p := range parts {
			if !slices.Contains(topics, p.Topic) {
				topics = append(topics, p.Topic)
			}
		}
		if len(topics) == 0 {
			return &Error{Kind: ErrNotFound, Reason: "GROUP_NOT_FOUND",
				Message: fmt.Sprintf("queue group %q has no state on any partition; name the topic to move (runnel group seek --topic)", group)}
		}
	}
	for _, t := range topics {
		n, err := c.meta.partitions(ctx, t)
		if err != nil {
			return err
		}
		for p := range int32(n) {
			err := c.queueCall(ctx, t, p, 0, func(ctx context.Context, qc runnelpb.QueuesClient) error {
				_, err := qc.SeekQueue(ctx, &runnelpb.SeekQueueRequest{Group: group, Topic: t, Partition: p, To: to.proto()})
				return err
			})
			if err != nil {
				return fmt.Errorf("seek queue group %q on %s/%d: %w", group, t, p, err)
			}
		}
	}
	return nil
}

// DeleteQueueGroup forgets queue group group on every partition it has
// state on.
func (c *Client) DeleteQueueGroup(ctx context.Context, group string) error {
	parts, err := c.QueueGroups(ctx, group)
	if err != nil {
		return err
	}
	if len(parts) == 0 {
		return &Error{Kind: ErrNotFound, Reason: "GROUP_NOT_FOUND", Message: fmt.Sprintf("queue group %q not found", group)}
	}
	for _, p := range parts {
		err := c.queueCall(ctx, p.Topic, p.Partition, 0, func(ctx context.Context, qc runnelpb.QueuesClient) error {
			_, err := qc.DeleteQueue(ctx, &runnelpb.DeleteQueueRequest{Group: group, Topic: p.Topic, Partition: p.Partition})
			return err
		})
		if err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("delete queue group %q on %s/%d: %w", group, p.Topic, p.Partition, err)
		}
	}
	return nil
}
