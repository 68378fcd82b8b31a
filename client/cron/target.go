package cron

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/client/job"
)

// clientTarget is the target of a Cron built by New: its client and the
// extra ones, one per producer slot.
type clientTarget struct{ cs []*client.Client }

var _ target = clientTarget{}

// topicWait bounds how long lastFires retries a topic just created, or
// its partitions' leaders, to show on the node it asks.
const topicWait = 30 * time.Second

// ensureTopic creates topic unless it exists and waits until every client
// knows it, since each may publish to it.
func (t clientTarget) ensureTopic(ctx context.Context, topic string, partitions, replicas int) (int, error) {
	info, err := t.cs[0].EnsureTopic(ctx, topic, partitions, replicas)
	if err != nil {
		return 0, err
	}
	for _, c := range t.cs[1:] {
		if _, err := c.EnsureTopic(ctx, topic, partitions, replicas); err != nil {
			return 0, err
		}
	}
	return len(info.Partitions), nil
}

func (t clientTarget) describeWhenKnown(ctx context.Context, topic string) (info client.TopicInfo, err error) {
	err = retry(ctx, func() error {
		info, err = t.cs[0].DescribeTopic(ctx, topic)
		return err
	})
	return info, err
}

// retry calls f until it succeeds, fails with an error that is neither
// retriable nor ErrNotFound (a topic just created is not known to every
// node at once, nor are its leaders), or topicWait has passed.
func retry(ctx context.Context, f func() error) error {
	deadline := time.Now().Add(topicWait)
	for {
		err := f()
		if err == nil || !client.Retriable(err) && !errors.Is(err, client.ErrNotFound) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// lastFires reads every partition of topic from the first record written
// at or after since up to the current end, and keeps the latest scheduled
// time named by the dedupe id of each job's records.
func (t clientTarget) lastFires(ctx context.Context, topic string, names map[string]bool, since time.Time) (map[string]time.Time, error) {
	info, err := t.describeWhenKnown(ctx, topic)
	if err != nil {
		return nil, err
	}
	last := map[string]time.Time{}
	for _, p := range info.Partitions {
		var end, from client.Offsets
		err := retry(ctx, func() (err error) {
			if end, err = t.cs[0].ListOffsets(ctx, topic, p.Partition, client.End()); err != nil {
				return err
			}
			from, err = t.cs[0].ListOffsets(ctx, topic, p.Partition, client.Time(since))
			return err
		})
		if err != nil {
			return nil, err
		}
		if from.Offset >= end.Offset {
			continue
		}
		readCtx, cancel := context.WithCancel(ctx)
		for r, err := range t.cs[0].Consume(readCtx, topic, p.Partition, client.Offset(from.Offset)) {
			if err != nil {
				cancel()
				return nil, err
			}
			noteFire(last, names, r)
			if r.Offset >= end.Offset-1 {
				break
			}
		}
		cancel()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return last, nil
}

// noteFire keeps r's scheduled time in last when r is a fire of a job in
// names that is later than the one kept.
func noteFire(last map[string]time.Time, names map[string]bool, r *client.Record) {
	name := string(r.Key)
	if !names[name] {
		return
	}
	for _, h := range r.Headers {
		if h.Key != job.MsgIDHeader {
			continue
		}
		s, ok := strings.CutPrefix(string(h.Value), name+"@")
		if !ok {
			return
		}
		at, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return
		}
		if at.After(last[name]) {
			last[name] = at.UTC()
		}
		return
	}
}

func (t clientTarget) publish(ctx context.Context, slot int, rec *client.Record) error {
	return t.cs[slot].ProduceSync(ctx, rec)
}

func (t clientTarget) slots() int { return len(t.cs) }
