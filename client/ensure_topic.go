package client

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// EnsureTopic creates topic name with partitions and replicas (0 for the
// broker's defaults) unless it exists, and returns it once this client
// knows it, so that records can be written to it at once. An existing
// topic is returned as it is, whatever its partition count.
//
// A topic another client created a moment ago, as when several instances
// of a program start together, may not be known yet to the node asked:
// EnsureTopic asks again, with the client's backoff, until the topic
// shows, ctx ends or DeliveryTimeout passes.
func (c *Client) EnsureTopic(ctx context.Context, name string, partitions, replicas int) (TopicInfo, error) {
	info, err := c.knownTopic(ctx, name)
	if !errors.Is(err, ErrNotFound) {
		return info, err
	}
	if _, err := c.CreateTopic(ctx, name, partitions, replicas, nil); err != nil && !errors.Is(err, ErrAlreadyExists) {
		return TopicInfo{}, err
	}
	start := time.Now()
	for attempt := 1; ; attempt++ {
		info, err := c.knownTopic(ctx, name)
		if err == nil || !errors.Is(err, ErrNotFound) && !Retriable(err) || time.Since(start) > c.cfg.deliveryTimeout {
			return info, err
		}
		if serr := c.sleep(ctx, c.prod.backoff(attempt)); serr != nil {
			return TopicInfo{}, fmt.Errorf("topic %q: %w (last error: %w)", name, serr, err)
		}
	}
}

// knownTopic fetches the metadata of topic name into the client's cache
// and returns the topic.
func (c *Client) knownTopic(ctx context.Context, name string) (TopicInfo, error) {
	resp, err := c.meta.fetch(ctx, []string{name})
	if err != nil {
		return TopicInfo{}, err
	}
	for _, t := range resp.GetTopics() {
		if t.GetName() == name {
			return topicInfo(t), nil
		}
	}
	return TopicInfo{}, topicNotFound(name)
}
