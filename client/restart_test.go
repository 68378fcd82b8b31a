package client_test

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
)

// TestBrokerRestart stops the broker under a client that is producing and
// consuming, starts it again on the same address and data, and checks that
// both carry on: records produced while it was down are retried, and the
// consumer resumes after the last record it yielded.
func TestBrokerRestart(t *testing.T) {
	dir := t.TempDir()
	opts := broker.Options{Addr: "127.0.0.1:0", NoSync: true, ShutdownTimeout: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
	b, err := broker.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	opts.Addr = b.Addr()
	c, err := client.New(testContext(t), client.Brokers(b.Addr()), client.RetryBackoff(5*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testContext(t)
	createTopic(t, c, "t", 1, nil)

	consumed := make(chan string, 100)
	go func() {
		for r, err := range c.Consume(ctx, "t", 0, client.Start()) {
			if err != nil {
				consumed <- "error: " + err.Error()
				return
			}
			consumed <- string(r.Value)
		}
	}()
	expect := func(want string) {
		t.Helper()
		if got := <-consumed; got != want {
			t.Fatalf("consumed %q, want %q", got, want)
		}
	}
	if err := c.ProduceSync(ctx, &client.Record{Topic: "t", Value: []byte("0")}); err != nil {
		t.Fatal(err)
	}
	expect("0")

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	produced := make(chan error, 1)
	go func() {
		produced <- c.ProduceSync(ctx, &client.Record{Topic: "t", Value: []byte("1")}, &client.Record{Topic: "t", Value: []byte("2")})
	}()
	b, err = broker.Open(dir, opts)
	if err != nil {
		t.Fatalf("reopen on %s: %v", opts.Addr, err)
	}
	defer b.Close()
	if err := <-produced; err != nil {
		t.Fatalf("produce across the restart: %v", err)
	}
	expect("1")
	expect("2")
	for i := 3; i < 6; i++ {
		if err := c.ProduceSync(ctx, &client.Record{Topic: "t", Value: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
		expect(fmt.Sprint(i))
	}
}
