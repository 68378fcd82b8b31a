// Package testcluster starts runnel clusters inside a test process, for the
// tests of packages built on the client.
package testcluster

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

// Start opens a three-node cluster in this process on loopback sockets
// chosen by the OS, closed when the test ends, and returns its addresses
// once it can create a replicated topic.
func Start(t testing.TB, ctx context.Context) []string {
	t.Helper()
	peers := map[int32]string{}
	var addrs []string
	for i := range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		peers[int32(i+1)] = l.Addr().String()
		l.Close()
	}
	for i := range 3 {
		b, err := broker.Open(t.TempDir(), broker.Options{NodeID: int32(i + 1), Cluster: peers, NoSync: true, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
	}
	c := Client(t, ctx, addrs...)
	for {
		_, err := c.CreateTopic(ctx, "ready", 1, 3, nil)
		if err == nil {
			return addrs
		}
		if ctx.Err() != nil || !strings.Contains(err.Error(), "cluster has") && !client.Retriable(err) {
			t.Fatalf("create topic: %v", err)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Client returns a client of the brokers at addrs, closed when the test
// ends.
func Client(t testing.TB, ctx context.Context, addrs ...string) *client.Client {
	t.Helper()
	c, err := client.New(ctx, client.Brokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
