package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
)

// TestGroupCommandsQueue shows a queue group in group list, describe and
// seek: the settled offset, the leases, and a rewind while it runs.
func TestGroupCommandsQueue(t *testing.T) {
	addr := startBroker(t, broker.Options{})
	mustCLI(t, addr, "", "topic", "create", "jobs", "-p", "1")
	mustCLI(t, addr, "a\nb\nc\nd\n", "produce", "jobs")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := dial(t, ctx, addr)
	q, err := c.Queue("workers", "jobs", client.QueueOptions{Prefetch: 1})
	if err != nil {
		t.Fatal(err)
	}
	d, err := q.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Ack(ctx, d); err != nil {
		t.Fatal(err)
	}
	q.Close()

	if out := mustCLI(t, addr, "", "group", "list"); !strings.Contains(out, "workers") || !strings.Contains(out, "queue") {
		t.Fatalf("group list:\n%s", out)
	}
	describe := func() map[string]any {
		t.Helper()
		var v map[string]any
		if err := json.Unmarshal([]byte(mustCLI(t, addr, "", "group", "describe", "workers", "--format", "json")), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	v := describe()
	parts := v["partitions"].([]any)
	p := parts[0].(map[string]any)
	if v["type"] != "queue" || p["committed"] != 1.0 || p["end_offset"] != 4.0 || p["lag"] != 3.0 {
		t.Fatalf("describe: %v", v)
	}
	mustCLI(t, addr, "", "group", "seek", "workers", "--to", "start")
	p = describe()["partitions"].([]any)[0].(map[string]any)
	if p["committed"] != 0.0 || p["lag"] != 4.0 || p["leased"] != 0.0 {
		t.Fatalf("after seek to start: %v", p)
	}
	if out := mustCLI(t, addr, "", "group", "describe", "workers"); !strings.Contains(out, "queue group workers") {
		t.Fatalf("describe table:\n%s", out)
	}
	mustCLI(t, addr, "", "group", "delete", "workers")
	if _, _, errLine := cli(t, addr, "", "group", "describe", "workers"); !strings.Contains(errLine, "not found") {
		t.Fatalf("describe after delete: %q", errLine)
	}
}
