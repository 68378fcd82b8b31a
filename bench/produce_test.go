package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/runnel-dev/runnel/bench"
	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
)

func embedded(t *testing.T) *client.Client {
	t.Helper()
	b, err := broker.Open(t.TempDir(), broker.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	c, err := client.New(t.Context(), client.Dialer(b.DialContext), client.Linger(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.CreateTopic(t.Context(), "b", 2, 0, nil); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestProduceCountsEveryRecord(t *testing.T) {
	c := embedded(t)
	for _, rate := range []float64{0, 20000} {
		res, err := bench.Produce(t.Context(), bench.NewRunnel(c, "b"), bench.ProduceConfig{Records: 2000, Size: 100, Rate: rate})
		if err != nil {
			t.Fatal(err)
		}
		if res.Records != 2000 || res.Bytes != 200000 {
			t.Errorf("rate %v: records %d bytes %d, want 2000 and 200000", rate, res.Records, res.Bytes)
		}
		var sum int64
		for _, n := range res.Throughput {
			sum += n
		}
		if sum != 2000 {
			t.Errorf("rate %v: throughput timeline sums to %d, want 2000", rate, sum)
		}
		l := res.LatencyMS
		worst := 0.0
		for _, w := range res.WorstLatencyMS {
			worst = max(worst, w)
		}
		if len(res.WorstLatencyMS) != len(res.Throughput) || worst > l.Max*1.01 || worst < l.P999*0.99 {
			t.Errorf("rate %v: worst latency per second %v does not match the %d seconds and max %v", rate, res.WorstLatencyMS, len(res.Throughput), l.Max)
		}
		if !(l.P50 > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
			t.Errorf("rate %v: percentiles out of order: %+v", rate, l)
		}
	}
	// The records are on the broker.
	off, err := c.ListOffsets(t.Context(), "b", 0, client.End())
	if err != nil {
		t.Fatal(err)
	}
	off1, err := c.ListOffsets(t.Context(), "b", 1, client.End())
	if err != nil {
		t.Fatal(err)
	}
	if got := off.Offset + off1.Offset; got != 4000 {
		t.Errorf("partitions hold %d records, want 4000", got)
	}
}

func TestProduceFailsOnUnknownTopic(t *testing.T) {
	c := embedded(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, err := bench.Produce(ctx, bench.NewRunnel(c, "missing"), bench.ProduceConfig{Records: 10, Size: 10})
	if err == nil {
		t.Fatal("produce to a missing topic succeeded")
	}
}

func TestResultJSONFields(t *testing.T) {
	c := embedded(t)
	res, err := bench.Produce(t.Context(), bench.NewRunnel(c, "b"), bench.ProduceConfig{Records: 100, Size: 10})
	if err != nil {
		t.Fatal(err)
	}
	res.Environment = bench.CurrentEnvironment("embedded broker")
	var buf bytes.Buffer
	if err := res.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"workload", "records", "records_per_sec", "mb_per_sec", "latency_ms", "durability", "environment"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON has no %q: %s", k, buf.String())
		}
	}
	lat, _ := m["latency_ms"].(map[string]any)
	for _, k := range []string{"p50", "p90", "p99", "p999", "max"} {
		if _, ok := lat[k]; !ok {
			t.Errorf("latency_ms has no %q", k)
		}
	}
	env, _ := m["environment"].(map[string]any)
	for _, k := range []string{"cpu", "cores", "go_version", "git_commit"} {
		if _, ok := env[k]; !ok {
			t.Errorf("environment has no %q", k)
		}
	}
	buf.Reset()
	if err := res.WriteTable(&buf); err != nil || buf.Len() == 0 {
		t.Errorf("table: %v, %d bytes", err, buf.Len())
	}
}
