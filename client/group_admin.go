package client

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"google.golang.org/grpc"

	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// TopicPartition names one partition of a topic.
type TopicPartition struct {
	Topic     string
	Partition int32
}

func (tp TopicPartition) String() string { return fmt.Sprintf("%s/%d", tp.Topic, tp.Partition) }

// GroupSummary is one group in ListGroups.
type GroupSummary struct {
	Group string
	// State is "stable", "rebalancing" or "empty" (no members, only
	// committed offsets).
	State   string
	Members int
}

// GroupInfo describes a group: its members and, for every partition of
// the topics it reads or has offsets for, the committed offset and lag.
type GroupInfo struct {
	Group      string
	State      string
	Strategy   string
	Generation int64
	Members    []GroupMemberInfo
	Partitions []GroupPartitionInfo
}

// GroupMemberInfo is one member of a group.
type GroupMemberInfo struct {
	MemberID string
	ClientID string
	Topics   []string
	Assigned []TopicPartition
	Revoking []TopicPartition
}

// GroupPartitionInfo is a group's progress on one partition.
type GroupPartitionInfo struct {
	Topic     string
	Partition int32
	// Committed is the next offset the group will read, -1 when it has
	// committed nothing for the partition.
	Committed int64
	// EndOffset is the partition's end offset (high watermark).
	EndOffset int64
	// Lag is EndOffset minus Committed, or minus the partition's start
	// offset when nothing is committed.
	Lag int64
	// Member owns the partition now, "" for none.
	Member string
}

// ErrGroupActive is returned for a seek or delete of a group that has
// live members: stop them first.
var ErrGroupActive = errors.New("client: group has live members")

// groupsCall runs f against the group coordinator: the node at addr when
// set, else the brokers in turn. A NOT_COORDINATOR answer is followed to
// the coordinator it names; a broker that cannot be reached is skipped.
// While the coordinator moves (no controller leader yet, or nodes still
// naming the old one), the call is retried with backoff until ctx ends or
// DeliveryTimeout passes.
func (c *Client) groupsCall(ctx context.Context, addr string, f func(ctx context.Context, g runnelpb.GroupsClient) error) error {
	return c.groupsCallAt(ctx, addr, func(ctx context.Context, _ string, g runnelpb.GroupsClient) error {
		return f(ctx, g)
	})
}

// groupsCallAt is groupsCall for calls that need the address they go to.
func (c *Client) groupsCallAt(ctx context.Context, addr string, f func(ctx context.Context, addr string, g runnelpb.GroupsClient) error) error {
	start := time.Now()
	for attempt := 1; ; attempt++ {
		err := c.groupsCallOnce(ctx, addr, f)
		if err == nil || !Retriable(err) || time.Since(start) > c.cfg.deliveryTimeout {
			return err
		}
		addr = "" // ask around: the coordinator moved
		if serr := c.sleep(ctx, c.prod.backoff(attempt)); serr != nil {
			return err
		}
	}
}

func (c *Client) groupsCallOnce(ctx context.Context, addr string, f func(ctx context.Context, addr string, g runnelpb.GroupsClient) error) error {
	addrs := c.meta.brokerAddrs()
	if addr == "" {
		// The coordinator that answered last, if any: in a cluster only
		// the controller leader coordinates.
		if v, ok := c.groupsCoord.Load().(string); ok {
			addr = v
		}
	}
	if addr != "" {
		addrs = append([]string{addr}, addrs...)
	}
	var lastErr error
	tried := map[string]bool{}
	for i := 0; i < len(addrs); i++ {
		a := addrs[i]
		if tried[a] {
			continue
		}
		tried[a] = true
		gc, err := c.groupsClient(a)
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, c.cfg.requestTimeout)
		err = fromStatus(f(cctx, a, gc), a)
		cancel()
		if ctxErr := ctx.Err(); ctxErr != nil && err != nil {
			return ctxErr
		}
		var nl *NotLeaderError
		switch {
		case err == nil:
			c.groupsCoord.Store(a)
			return nil
		case errors.As(err, &nl) && nl.LeaderAddr != "" && !tried[nl.LeaderAddr]:
			addrs = append(addrs[:i+1], append([]string{nl.LeaderAddr}, addrs[i+1:]...)...)
			lastErr = err
		case isConnectError(err) || errors.Is(err, ErrUnavailable) || errors.As(err, &nl):
			lastErr = err
		default:
			return err
		}
	}
	return lastErr
}

// groupsClient returns the Groups API of the broker at addr.
func (c *Client) groupsClient(addr string) (runnelpb.GroupsClient, error) {
	return serviceClient(c, addr, runnelpb.NewGroupsClient)
}

// serviceClient returns one of the broker's APIs at addr, built by
// newClient (runnelpb's constructor for it) on the client's connection to
// addr, which it dials when there is none yet.
func serviceClient[T any](c *Client, addr string, newClient func(grpc.ClientConnInterface) T) (T, error) {
	var none T
	if _, err := c.conn(addr); err != nil {
		return none, err
	}
	c.connMu.Lock()
	defer c.connMu.Unlock()
	cc, ok := c.conns[addr]
	if !ok {
		return none, ErrClosed
	}
	return newClient(cc), nil
}

// ListGroups returns the groups that have members or committed offsets,
// sorted by name.
func (c *Client) ListGroups(ctx context.Context) ([]GroupSummary, error) {
	var resp *runnelpb.ListGroupsResponse
	err := c.groupsCall(ctx, "", func(ctx context.Context, g runnelpb.GroupsClient) (err error) {
		resp, err = g.ListGroups(ctx, &runnelpb.ListGroupsRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []GroupSummary
	for _, s := range resp.GetGroups() {
		out = append(out, GroupSummary{Group: s.GetGroup(), State: s.GetState(), Members: int(s.GetMembers())})
	}
	return out, nil
}

// DescribeGroup returns a group's members and its committed offset, end
// offset and lag per partition. It fails with ErrNotFound for a group
// with neither members nor offsets.
func (c *Client) DescribeGroup(ctx context.Context, group string) (GroupInfo, error) {
	var resp *runnelpb.DescribeGroupResponse
	err := c.groupsCall(ctx, "", func(ctx context.Context, g runnelpb.GroupsClient) (err error) {
		resp, err = g.DescribeGroup(ctx, &runnelpb.DescribeGroupRequest{Group: group})
		return err
	})
	if err != nil {
		return GroupInfo{}, err
	}
	out := GroupInfo{Group: resp.GetGroup(), State: resp.GetState(), Strategy: resp.GetStrategy(), Generation: resp.GetGeneration()}
	for _, m := range resp.GetMembers() {
		out.Members = append(out.Members, GroupMemberInfo{
			MemberID: m.GetMemberId(), ClientID: m.GetClientId(), Topics: m.GetTopics(),
			Assigned: fromPBParts(m.GetAssigned()), Revoking: fromPBParts(m.GetRevoking()),
		})
	}
	for _, p := range resp.GetPartitions() {
		gp := GroupPartitionInfo{Topic: p.GetTopic(), Partition: p.GetPartition(), Committed: p.GetCommittedOffset(),
			EndOffset: p.GetEndOffset(), Lag: p.GetLag(), Member: p.GetMemberId()}
		if gp.EndOffset < 0 {
			// The coordinator does not host this partition: ask its leader.
			offs, err := c.ListOffsets(ctx, gp.Topic, gp.Partition, End())
			if err != nil {
				return GroupInfo{}, err
			}
			gp.EndOffset = offs.End
			from := offs.Start
			if gp.Committed >= 0 {
				from = gp.Committed
			}
			gp.Lag = max(gp.EndOffset-from, 0)
		}
		out.Partitions = append(out.Partitions, gp)
	}
	return out, nil
}

// CommittedOffsets returns a group's committed offsets: for each
// partition, the next offset the group will read.
func (c *Client) CommittedOffsets(ctx context.Context, group string) (map[TopicPartition]int64, error) {
	var resp *runnelpb.FetchOffsetsResponse
	err := c.groupsCall(ctx, "", func(ctx context.Context, g runnelpb.GroupsClient) (err error) {
		resp, err = g.FetchOffsets(ctx, &runnelpb.FetchOffsetsRequest{Group: group})
		return err
	})
	if err != nil {
		return nil, err
	}
	out := map[TopicPartition]int64{}
	for _, o := range resp.GetOffsets() {
		out[TopicPartition{o.GetTopic(), o.GetPartition()}] = o.GetOffset()
	}
	return out, nil
}

// SeekGroup moves a group's committed offsets to a position: start, end,
// an offset or a time, resolved per partition. With topic set only that
// topic's partitions move; otherwise every topic the group has offsets
// for. It fails while the group has live members (their commits would
// race with it): stop them first.
func (c *Client) SeekGroup(ctx context.Context, group, topic string, to Position) error {
	var topics []string
	if topic != "" {
		topics = []string{topic}
	} else {
		committed, err := c.CommittedOffsets(ctx, group)
		if err != nil {
			return err
		}
		for tp := range committed {
			if !slices.Contains(topics, tp.Topic) {
				topics = append(topics, tp.Topic)
			}
		}
		if len(topics) == 0 {
			return &Error{Kind: ErrNotFound, Reason: "GROUP_NOT_FOUND",
				Message: fmt.Sprintf("group %q has no committed offsets to move; name the topic to move (runnel group seek --topic)", group)}
		}
		slices.Sort(topics)
	}
	var offs []*runnelpb.PartitionOffset
	for _, t := range topics {
		n, err := c.meta.partitions(ctx, t)
		if err != nil {
			return err
		}
		for p := range int32(n) {
			o, err := c.ListOffsets(ctx, t, p, to)
			if err != nil {
				return err
			}
			offs = append(offs, &runnelpb.PartitionOffset{Topic: t, Partition: p, Offset: o.Offset})
		}
	}
	return c.groupsCall(ctx, "", func(ctx context.Context, g runnelpb.GroupsClient) error {
		_, err := g.SeekGroup(ctx, &runnelpb.SeekGroupRequest{Group: group, Offsets: offs})
		return err
	})
}

// DeleteGroup forgets a group and its committed offsets. It fails while
// the group has live members.
func (c *Client) DeleteGroup(ctx context.Context, group string) error {
	return c.groupsCall(ctx, "", func(ctx context.Context, g runnelpb.GroupsClient) error {
		_, err := g.DeleteGroup(ctx, &runnelpb.DeleteGroupRequest{Group: group})
		return err
	})
}

func fromPBParts(ps []*runnelpb.TopicPartition) []TopicPartition {
	out := make([]TopicPartition, len(ps))
	for i, p := range ps {
		out[i] = TopicPartition{p.GetTopic(), p.GetPartition()}
	}
	return out
}

func toPBParts(ps []TopicPartition) []*runnelpb.TopicPartition {
	out := make([]*runnelpb.TopicPartition, len(ps))
	for i, p := range ps {
		out[i] = &runnelpb.TopicPartition{Topic: p.Topic, Partition: p.Partition}
	}
	return out
}

// CommitOffsets commits offsets for a group that has no members: a
// consumer that picks its partitions itself (Consume) and keeps its
// progress in a group, as Kafka allows. offs maps each partition to the
// next offset to read. A commit never moves an offset back; use SeekGroup
// for that. While the group has members it fails with ErrStaleGeneration:
// members commit through their GroupConsumer.
func (c *Client) CommitOffsets(ctx context.Context, group string, offs map[TopicPartition]int64) error {
	req := &runnelpb.CommitOffsetsRequest{Group: group}
	for _, tp := range sortParts(slices.Collect(maps.Keys(offs))) {
		req.Offsets = append(req.Offsets, &runnelpb.PartitionOffset{Topic: tp.Topic, Partition: tp.Partition, Offset: offs[tp]})
	}
	return c.groupsCallAt(ctx, "", func(ctx context.Context, addr string, g runnelpb.GroupsClient) error {
		return c.commits.commit(ctx, addr, g, req)
	})
}
