package cron_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/client/cron"
	"github.com/runnel-dev/runnel/client/job"
	"github.com/runnel-dev/runnel/internal/testcluster"
)

func startCluster(t *testing.T, ctx context.Context) []string {
	return testcluster.Start(t, ctx)
}

func newClient(t *testing.T, ctx context.Context, addrs ...string) *client.Client {
	return testcluster.Client(t, ctx, addrs...)
}

// readFires returns the dedupe ids of every record of topic, in offset
// order per partition.
func readFires(t *testing.T, ctx context.Context, c *client.Client, topic string) []string {
	t.Helper()
	info, err := c.DescribeTopic(ctx, topic)
	if errors.Is(err, client.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range info.Partitions {
		offs, err := c.ListOffsets(ctx, topic, p.Partition, client.End())
		if err != nil {
			t.Fatal(err)
		}
		if offs.End == offs.Start {
			continue
		}
		for r, err := range c.Consume(ctx, topic, p.Partition, client.Start()) {
			if err != nil {
				t.Fatal(err)
			}
			j, err := job.Decode(r.Value)
			if err != nil {
				t.Fatalf("offset %d: %v", r.Offset, err)
			}
			ids = append(ids, j.ID)
			if r.Offset == offs.End-1 {
				break
			}
		}
	}
	return ids
}

// checkOnce fails unless ids are name's fires at consecutive seconds, each
// once, and at least min of them.
func checkOnce(t *testing.T, name string, ids []string, min int) {
	t.Helper()
	seen := map[string]int{}
	var times []time.Time
	for _, id := range ids {
		seen[id]++
		if seen[id] == 2 {
			t.Errorf("%s published twice", id)
		}
		at, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(id, name+"@"))
		if err != nil {
			t.Fatalf("id %q: %v", id, err)
		}
		if seen[id] == 1 {
			times = append(times, at)
		}
	}
	slices.SortFunc(times, time.Time.Compare)
	if len(times) < min {
		t.Fatalf("%d fires, want at least %d: %v", len(times), min, ids)
	}
	for i := 1; i < len(times); i++ {
		if d := times[i].Sub(times[i-1]); d != time.Second {
			t.Errorf("fires %v and %v are %v apart, want 1s (one is missing)", times[i-1], times[i], d)
		}
	}
}

// publishes returns what runnel_cron_publishes_total counted for result.
func publishes(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "runnel_cron_publishes_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// startNode opens a single-node broker on a loopback socket and returns its
// address three times, as startCluster returns three.
func startNode(t *testing.T) []string {
	t.Helper()
	b, err := broker.Open(t.TempDir(), broker.Options{Addr: "127.0.0.1:0", NoSync: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return []string{b.Addr(), b.Addr(), b.Addr()}
}

// TestTwoInstancesPublishEachFireOnce runs two cron instances with the same
// job file against a single node and against a three-node cluster: both
// publish every fire, and the topic has each once.
func TestTwoInstancesPublishEachFireOnce(t *testing.T) {
	t.Run("single-node", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		twoInstances(t, ctx, startNode(t))
	})
	t.Run("cluster", func(t *testing.T) {
		if testing.Short() {
			t.Skip("starts a three-node cluster")
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		twoInstances(t, ctx, startCluster(t, ctx))
	})
}

func twoInstances(t *testing.T, ctx context.Context, addrs []string) {
	jobs, err := cron.Parse("jobs.yaml", []byte(`
jobs:
  - {name: tick, schedule: "@every 1s", topic: ticks, command: "date", partitions: 3}
`))
	if err != nil {
		t.Fatal(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	var regs []*prometheus.Registry
	done := make(chan error, 2)
	for i := range 2 {
		reg := prometheus.NewRegistry()
		regs = append(regs, reg)
		// Each instance talks to a different node first.
		// A generous Grace: a fire late on a busy machine is still made,
		// so that only a duplicate or a lost publish can break the count.
		cr, err := cron.New(newClient(t, ctx, addrs[i], addrs[(i+1)%3]), jobs, cron.Options{Registerer: reg, Grace: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		go func() { done <- cr.Run(runCtx) }()
	}
	// Wait until each instance has published 4 fires.
	for publishes(t, regs[0], cron.ResultOK) < 4 || publishes(t, regs[1], cron.ResultOK) < 4 {
		select {
		case err := <-done:
			t.Fatalf("an instance stopped: %v", err)
		case <-ctx.Done():
			t.Fatalf("the instances published %v and %v fires in a minute", publishes(t, regs[0], cron.ResultOK), publishes(t, regs[1], cron.ResultOK))
		case <-time.After(50 * time.Millisecond):
		}
	}
	stop()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	for i, reg := range regs {
		if n := publishes(t, reg, cron.ResultError); n != 0 {
			t.Errorf("instance %d: %v publishes failed", i, n)
		}
	}
	ids := readFires(t, ctx, newClient(t, ctx, addrs...), "ticks")
	checkOnce(t, "tick", ids, 4)
}

// TestCatchUpAfterRestart stops a catchup job's only instance for a few
// fires and starts a new one: it reads the last fire back from the topic and
// publishes the missed ones, so the topic has every second once. It runs
// on one embedded node, which also shows that Run creates the topic with
// the job's partition count.
func TestCatchUpAfterRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	b, err := broker.Open(t.TempDir(), broker.Options{NoSync: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	c, err := client.New(ctx, client.Brokers(b.Addr()), client.Dialer(b.DialContext))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	jobs, err := cron.Parse("jobs.yaml", []byte(`
jobs:
  - {name: tick, schedule: "@every 1s", topic: ticks, command: "date", missed: catchup, partitions: 2}
  - {name: other, schedule: "@every 1s", topic: ticks, command: "date"}
`))
	if err != nil {
		t.Fatal(err)
	}
	// Fires are on time only within 100ms, so a stop of a few seconds
	// misses some.
	opts := cron.Options{Grace: 100 * time.Millisecond}

	run := func(until func() bool) {
		reg := prometheus.NewRegistry()
		o := opts
		o.Registerer = reg
		cr, err := cron.New(c, jobs, o)
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- cr.Run(runCtx) }()
		for !until() {
			select {
			case <-ctx.Done():
				t.Fatal("timed out")
			case <-time.After(20 * time.Millisecond):
			}
		}
		stop()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	count := func(name string) int {
		n := 0
		for _, id := range readFires(t, ctx, c, "ticks") {
			if strings.HasPrefix(id, name+"@") {
				n++
			}
		}
		return n
	}
	run(func() bool { return count("tick") >= 2 })
	stopped := time.Now()
	info, err := c.DescribeTopic(ctx, "ticks")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Partitions) != 2 {
		t.Errorf("topic ticks has %d partitions, want 2 (the job's)", len(info.Partitions))
	}
	// Wait (for real: the schedule runs on the wall clock) until 3 fires
	// have passed with no instance running.
	select {
	case <-ctx.Done():
		t.Fatal("timed out")
	case <-time.After(time.Until(stopped.Truncate(time.Second).Add(4 * time.Second))):
	}
	before := count("tick")
	run(func() bool { return count("tick") >= before+5 })

	var ticks []string
	for _, id := range readFires(t, ctx, c, "ticks") {
		if strings.HasPrefix(id, "tick@") {
			ticks = append(ticks, id)
		}
	}
	checkOnce(t, "tick", ticks, 7)
}
