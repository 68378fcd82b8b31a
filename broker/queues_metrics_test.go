package broker_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
)

// TestQueueMetrics scrapes a queue group's backlog and leases.
func TestQueueMetrics(t *testing.T) {
	b, err := broker.Open(t.TempDir(), broker.Options{HTTPAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := client.New(ctx, client.Brokers(b.Addr()), client.Dialer(b.DialContext))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.CreateTopic(ctx, "jobs", 1, 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.ProduceSync(ctx, &client.Record{Topic: "jobs", Value: []byte("a")}, &client.Record{Topic: "jobs", Value: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	q, err := c.Queue("workers", "jobs", client.QueueOptions{Prefetch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if _, err := q.Next(ctx); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + b.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`runnel_queue_backlog_records{group="workers",partition="0",topic="jobs"} 2`,
		`runnel_queue_max_deliveries{group="workers",partition="0",topic="jobs"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
