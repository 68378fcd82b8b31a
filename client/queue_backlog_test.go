package client_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/client"
)

// TestQueueBacklogBound fills a topic up to its max.backlog.records past a
// queue group's settled offset: the next produce is refused with
// ErrResourceExhausted (retried until the delivery timeout, with one
// warning logged), and goes through once the group acks.
func TestQueueBacklogBound(t *testing.T) {
	b := openBroker(t, "")
	var logs bytes.Buffer
	c := newClient(t, b, client.DeliveryTimeout(time.Second),
		client.Logger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	createTopic(t, c, "t", 1, map[string]string{"max.backlog.records": "3"})
	ctx := testContext(t)
	q := openQueue(t, c, "g", "t", client.QueueOptions{Prefetch: 1})
	// The group exists on the partition once its first lease is applied.
	for {
		parts, err := c.QueueGroups(ctx, "g")
		if err != nil {
			t.Fatal(err)
		}
		if len(parts) == 1 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	produceJobs(t, c, "t", 3, nil)
	err := c.ProduceSync(ctx, &client.Record{Topic: "t", Value: []byte("over")})
	var e *client.Error
	if !errors.Is(err, client.ErrResourceExhausted) || !errors.As(err, &e) || e.Reason != "TOPIC_BACKLOG_FULL" || !strings.Contains(err.Error(), "max.backlog.records") {
		t.Fatalf("produce over the backlog: %v", err)
	}
	if e.RetryAfter <= 0 {
		t.Fatalf("no retry delay in %v", e)
	}
	// The refusal is logged once, not at each retry.
	if n := strings.Count(logs.String(), "broker refuses produce"); n != 1 || !strings.Contains(logs.String(), "max.backlog.records") {
		t.Fatalf("want one warning naming max.backlog.records, got %d in:\n%s", n, logs.String())
	}
	d, err := q.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Ack(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := c.ProduceSync(ctx, &client.Record{Topic: "t", Value: []byte("fits")}); err != nil {
		t.Fatalf("produce after an ack: %v", err)
	}
}
