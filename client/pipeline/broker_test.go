package pipeline_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
)

// env is an embedded broker and a way to make clients of it.
type env struct {
	t       *testing.T
	cluster bool
	b       *broker.Broker
}

// startBroker opens an in-process broker: a single node, or with cluster a
// one-node raft cluster on a loopback socket.
func startBroker(t *testing.T, cluster bool) *env {
	t.Helper()
	opts := broker.Options{NoSync: true, Logger: slog.New(slog.DiscardHandler)}
	if cluster {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		opts.Addr, opts.NodeID, opts.Cluster = addr, 1, map[int32]string{1: addr}
	}
	b, err := broker.Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return &env{t: t, cluster: cluster, b: b}
}

func (e *env) client(opts ...client.Option) *client.Client {
	e.t.Helper()
	opts = append([]client.Option{client.Brokers(e.b.Addr()), client.Dialer(e.b.DialContext)}, opts...)
	c, err := client.New(e.t.Context(), opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// createTopics creates topics with partitions each, waiting for a cluster
// to be ready to.
func (e *env) createTopics(ctx context.Context, c *client.Client, partitions int, topics ...string) {
	e.t.Helper()
	for _, topic := range topics {
		for {
			_, err := c.CreateTopic(ctx, topic, partitions, 1, nil)
			if err == nil {
				break
			}
			if ctx.Err() != nil || !strings.Contains(err.Error(), "cluster has") && !client.Retriable(err) {
				e.t.Fatalf("create topic %s: %v", topic, err)
			}
			select {
			case <-ctx.Done():
				e.t.Fatal(ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// readAll returns clones of every record of topic's partitions up to their
// end offsets now.
func readAll(t *testing.T, ctx context.Context, c *client.Client, topic string) []*client.Record {
	t.Helper()
	info, err := c.DescribeTopic(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var out []*client.Record
	for _, p := range info.Partitions {
		offs, err := c.ListOffsets(ctx, topic, p.Partition, client.End())
		if err != nil {
			t.Fatal(err)
		}
		if offs.End == 0 {
			continue
		}
		for r, err := range c.Consume(ctx, topic, p.Partition, client.Start()) {
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, r.Clone())
			if r.Offset >= offs.End-1 {
				break
			}
		}
	}
	return out
}
