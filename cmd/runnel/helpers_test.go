package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
)

// startBroker runs a broker on a loopback port for the CLI to talk to.
func startBroker(t *testing.T, opts broker.Options) string {
	t.Helper()
	opts.Addr = "127.0.0.1:0"
	opts.Logger = slog.New(slog.DiscardHandler)
	b, err := broker.Open(t.TempDir(), opts)
	if err != nil {
		t.Fatalf("open broker: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b.Addr()
}

// runCLI runs `runnel ARGS` in process with stdin, and returns stdout,
// stderr and the error line main would print (empty on success).
func runCLI(t *testing.T, stdin string, args ...string) (stdout, stderr, errLine string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	root := rootCmd()
	root.SetArgs(args)
	root.SetIn(strings.NewReader(stdin))
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	if err := root.ExecuteContext(ctx); err != nil {
		errLine = "runnel: " + err.Error()
		if strings.Contains(errLine, "\n") {
			t.Errorf("runnel %s: error spans lines: %q", strings.Join(args, " "), errLine)
		}
	}
	return out.String(), errb.String(), errLine
}

// cli is runCLI for a client command: `runnel ARGS --brokers addr`.
func cli(t *testing.T, addr, stdin string, args ...string) (stdout, stderr, errLine string) {
	t.Helper()
	return runCLI(t, stdin, append(args, "--brokers", addr)...)
}

// mustCLI is cli for commands that must succeed.
func mustCLI(t *testing.T, addr, stdin string, args ...string) string {
	t.Helper()
	out, _, errLine := cli(t, addr, stdin, args...)
	if errLine != "" {
		t.Fatalf("runnel %s: %s", strings.Join(args, " "), errLine)
	}
	return out
}

// startCLI runs `runnel ARGS` in process until it returns or ctx ends,
// its stdout discarded. done receives what it returns; stderr holds what
// it has written so far.
func startCLI(ctx context.Context, args ...string) (done <-chan error, stderr *syncBuffer) {
	root := rootCmd()
	root.SetArgs(args)
	stderr = &syncBuffer{}
	root.SetOut(io.Discard)
	root.SetErr(stderr)
	ch := make(chan error, 1)
	go func() { ch <- root.ExecuteContext(ctx) }()
	return ch, stderr
}

// syncBuffer is a buffer a command writes to while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// jsonRecord is a line of `runnel consume --format json`.
type jsonRecord struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Timestamp string `json:"timestamp"`
	Key       string `json:"key"`
	Value     string `json:"value"`
	Encoding  string `json:"encoding"`
	Headers   []struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	} `json:"headers"`
}

func parseJSONLines(t *testing.T, out string) []jsonRecord {
	t.Helper()
	var recs []jsonRecord
	for line := range strings.Lines(out) {
		var r jsonRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("bad json line %q: %v", line, err)
		}
		recs = append(recs, r)
	}
	return recs
}

// dial connects a client to addr, closed when the test ends.
func dial(t *testing.T, ctx context.Context, addr string) *client.Client {
	t.Helper()
	c, err := client.New(ctx, client.Brokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// topicRecords returns the records of every partition of topic, up to the
// end each has now; none when the topic does not exist yet.
func topicRecords(t *testing.T, ctx context.Context, c *client.Client, topic string) []*client.Record {
	t.Helper()
	info, err := c.DescribeTopic(ctx, topic)
	if errors.Is(err, client.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("describe %s: %v", topic, err)
	}
	var out []*client.Record
	for _, p := range info.Partitions {
		offs, err := c.ListOffsets(ctx, topic, p.Partition, client.End())
		if err != nil {
			t.Fatalf("offsets of %s/%d: %v", topic, p.Partition, err)
		}
		if offs.End == offs.Start {
			continue
		}
		for r, err := range c.Consume(ctx, topic, p.Partition, client.Start()) {
			if err != nil {
				t.Fatalf("read %s/%d: %v", topic, p.Partition, err)
			}
			out = append(out, r.Clone())
			if r.Offset >= offs.End-1 {
				break
			}
		}
	}
	return out
}

// waitFor polls cond until it holds, failing the test after 30 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
