package client_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
)

// transports are the two ways a client reaches a broker; key tests run over
// both.
var transports = []struct {
	name string
	addr string
}{
	{"socket", "127.0.0.1:0"},
	{"inprocess", ""},
}

// openBroker starts a broker on a temporary directory; addr "" serves it in
// process only. It closes when the test ends, after the clients opened
// later.
func openBroker(t testing.TB, addr string, opts ...broker.Options) *broker.Broker {
	t.Helper()
	var o broker.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	o.Addr, o.Logger = addr, slog.New(slog.DiscardHandler)
	b, err := broker.Open(t.TempDir(), o)
	if err != nil {
		t.Fatalf("open broker: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close broker: %v", err)
		}
	})
	return b
}

// newClient returns a client of b, in process when b has no socket.
func newClient(t testing.TB, b *broker.Broker, opts ...client.Option) *client.Client {
	t.Helper()
	opts = append([]client.Option{client.Brokers(b.Addr())}, opts...)
	if b.Addr() == "inprocess" {
		opts = append(opts, client.Dialer(b.DialContext))
	}
	c, err := client.New(context.Background(), opts...)
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close client: %v", err)
		}
	})
	return c
}

// testContext returns a context that ends with the test, bounded so a hang
// fails rather than stalls.
func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func createTopic(t testing.TB, c *client.Client, name string, partitions int, configs map[string]string) {
	t.Helper()
	if _, err := c.CreateTopic(testContext(t), name, partitions, 1, configs); err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
}
