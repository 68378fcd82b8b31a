package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/broker"
)

func TestProduceConsumeKeyed(t *testing.T) {
	addr := startBroker(t, broker.Options{NoSync: true})
	mustCLI(t, addr, "", "topic", "create", "t", "-p", "3")

	const n, keys = 5000, 17
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, "k%d:%d\n", i%keys, i)
	}
	_, stderr, errLine := cli(t, addr, in.String(), "produce", "t", "--key-sep", ":", "--header", "src=test")
	if errLine != "" {
		t.Fatalf("produce: %s", errLine)
	}
	if !strings.Contains(stderr, fmt.Sprintf("produced %d records", n)) {
		t.Errorf("produce summary %q does not give the count", stderr)
	}

	out := mustCLI(t, addr, "", "consume", "t", "--until-end", "--format", "json")
	recs := parseJSONLines(t, out)
	if len(recs) != n {
		t.Fatalf("consumed %d records, want %d", len(recs), n)
	}
	seen := make([]bool, n)
	next := map[int32]int64{}
	last := map[string]int{}
	for _, r := range recs {
		var v int
		if _, err := fmt.Sscan(r.Value, &v); err != nil || v < 0 || v >= n || seen[v] {
			t.Fatalf("bad or repeated value %q", r.Value)
		}
		seen[v] = true
		if r.Topic != "t" || r.Offset != next[r.Partition] {
			t.Fatalf("%s/%d offset %d, want t/%d offset %d (dense from 0)", r.Topic, r.Partition, r.Offset, r.Partition, next[r.Partition])
		}
		next[r.Partition]++
		if want := fmt.Sprintf("k%d", v%keys); r.Key != want {
			t.Fatalf("value %d has key %q, want %q", v, r.Key, want)
		}
		if l, ok := last[r.Key]; ok && l > v {
			t.Fatalf("key %s: %d after %d; a key's records must keep produce order", r.Key, v, l)
		}
		last[r.Key] = v
		if len(r.Headers) != 1 || r.Headers[0].Key != "src" || r.Headers[0].Value != "test" {
			t.Fatalf("headers %+v, want src=test", r.Headers)
		}
		if _, err := time.Parse(time.RFC3339Nano, r.Timestamp); err != nil {
			t.Fatalf("timestamp %q: %v", r.Timestamp, err)
		}
	}

	// --num stops early; text prints values.
	out = mustCLI(t, addr, "", "consume", "t", "--num", "10")
	if got := strings.Count(out, "\n"); got != 10 {
		t.Fatalf("--num 10 printed %d lines", got)
	}
}

func TestConsumePartitionFromOffset(t *testing.T) {
	addr := startBroker(t, broker.Options{NoSync: true})
	mustCLI(t, addr, "", "topic", "create", "t", "-p", "2")
	var in strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&in, "%d\n", i)
	}
	mustCLI(t, addr, in.String(), "produce", "t", "--partition", "1")

	out := mustCLI(t, addr, "", "consume", "t", "--partition", "1", "--from", "500", "--num", "1", "--format", "json")
	recs := parseJSONLines(t, out)
	if len(recs) != 1 || recs[0].Partition != 1 || recs[0].Offset != 500 || recs[0].Value != "500" {
		t.Fatalf("--partition 1 --from 500 gave %q", out)
	}
	out = mustCLI(t, addr, "", "consume", "t", "--partition", "1", "--from", "990", "--until-end")
	if want := "990\n991\n992\n993\n994\n995\n996\n997\n998\n999\n"; out != want {
		t.Fatalf("--from 990 --until-end printed %q, want %q", out, want)
	}
	// Partition 0 is empty: --until-end ends at once.
	if out := mustCLI(t, addr, "", "consume", "t", "--partition", "0", "--until-end"); out != "" {
		t.Fatalf("empty partition printed %q", out)
	}
}

func TestConsumeFromTime(t *testing.T) {
	addr := startBroker(t, broker.Options{NoSync: true})
	mustCLI(t, addr, "", "topic", "create", "t")
	mustCLI(t, addr, "a1\na2\n", "produce", "t")
	first := parseJSONLines(t, mustCLI(t, addr, "", "consume", "t", "--until-end", "--format", "json"))
	var latest time.Time
	for _, r := range first {
		ts, _ := time.Parse(time.RFC3339Nano, r.Timestamp)
		if ts.After(latest) {
			latest = ts
		}
	}
	// Timestamps have millisecond precision: wait for the clock to pass
	// the next millisecond, so the second batch is strictly later.
	cut := latest.Add(time.Millisecond)
	for !time.Now().After(cut) {
		time.Sleep(time.Millisecond)
	}
	mustCLI(t, addr, "b1\nb2\n", "produce", "t")

	out := mustCLI(t, addr, "", "consume", "t", "--from", "@"+cut.Format(time.RFC3339Nano), "--until-end")
	if out != "b1\nb2\n" {
		t.Fatalf("--from @%s printed %q, want the second batch", cut.Format(time.RFC3339Nano), out)
	}
	out = mustCLI(t, addr, "", "consume", "t", "--from", "@-1h", "--until-end")
	if out != "a1\na2\nb1\nb2\n" {
		t.Fatalf("--from @-1h printed %q, want everything", out)
	}
}

func TestTopicCommands(t *testing.T) {
	addr := startBroker(t, broker.Options{NoSync: true})
	mustCLI(t, addr, "", "topic", "create", "a", "-p", "2", "--config", "retention.ms=60000")
	mustCLI(t, addr, "", "topic", "create", "b")
	mustCLI(t, addr, "x\ny\n", "produce", "a", "--partition", "1")

	out := mustCLI(t, addr, "", "topic", "list")
	if !strings.Contains(out, "a ") || !strings.Contains(out, "b ") {
		t.Fatalf("topic list:\n%s", out)
	}
	var d struct {
		Name       string `json:"name"`
		Partitions []struct {
			Partition   int32   `json:"partition"`
			Leader      int32   `json:"leader"`
			Replicas    []int32 `json:"replicas"`
			StartOffset int64   `json:"start_offset"`
			EndOffset   int64   `json:"end_offset"`
		} `json:"partitions"`
		Configs map[string]string `json:"configs"`
	}
	out = mustCLI(t, addr, "", "topic", "describe", "a", "--format", "json")
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("describe json %q: %v", out, err)
	}
	if d.Name != "a" || len(d.Partitions) != 2 || d.Partitions[1].EndOffset != 2 || d.Partitions[1].Leader != 1 ||
		len(d.Partitions[1].Replicas) != 1 || d.Configs["retention.ms"] != "60000" {
		t.Fatalf("describe a: %+v", d)
	}
	mustCLI(t, addr, "", "topic", "alter", "a", "--config", "retention.ms=120000")
	out = mustCLI(t, addr, "", "topic", "describe", "a")
	if !strings.Contains(out, "retention.ms=120000") {
		t.Fatalf("describe after alter:\n%s", out)
	}
	mustCLI(t, addr, "", "topic", "delete", "b")
	if out := mustCLI(t, addr, "", "topic", "list", "--format", "json"); strings.Contains(out, `"b"`) {
		t.Fatalf("b still listed after delete: %s", out)
	}
}

func TestErrorsAreOneActionableLine(t *testing.T) {
	addr := startBroker(t, broker.Options{NoSync: true, RetentionInterval: 10 * time.Millisecond})
	mustCLI(t, addr, "", "topic", "create", "t")
	mustCLI(t, addr, "", "topic", "create", "small", "--config", "retention.bytes=1")
	// Two produce runs make at least two batches; retention drops the older.
	mustCLI(t, addr, "1\n2\n3\n", "produce", "small")
	mustCLI(t, addr, "4\n", "produce", "small")
	waitFor(t, "retention to drop the first batch of small", func() bool {
		var d struct {
			Partitions []struct {
				StartOffset int64 `json:"start_offset"`
			} `json:"partitions"`
		}
		out := mustCLI(t, addr, "", "topic", "describe", "small", "--format", "json")
		return json.Unmarshal([]byte(out), &d) == nil && d.Partitions[0].StartOffset > 0
	})

	cases := []struct {
		name  string
		addr  string
		stdin string
		args  []string
		want  []string
	}{
		{"existing topic", addr, "", []string{"topic", "create", "t"}, []string{"already exists"}},
		{"unknown topic consume", addr, "", []string{"consume", "nope", "--until-end"}, []string{`topic "nope" not found`, "runnel topic create nope"}},
		{"unknown topic produce", addr, "x\n", []string{"produce", "nope"}, []string{`topic "nope" not found`}},
		{"no such partition", addr, "", []string{"consume", "t", "--partition", "5"}, []string{"no partition 5"}},
		{"record too large", addr, strings.Repeat("x", 2<<20) + "\n", []string{"produce", "t"}, []string{"1 of 1 records not acked", "max.message.bytes"}},
		{"offset before start", addr, "", []string{"consume", "small", "--from", "0", "--until-end"}, []string{"offset 0 is before the start", "--from start"}},
		{"offset past the end", addr, "", []string{"consume", "t", "--from", "99"}, []string{"offset 99"}},
		{"bad position", addr, "", []string{"consume", "t", "--from", "yesterday"}, []string{`"yesterday"`, "@-DURATION"}},
		{"no broker", "127.0.0.1:1", "", []string{"topic", "list"}, []string{"cannot reach a broker at 127.0.0.1:1", "runnel serve", "--brokers"}},
		{"bad acks", addr, "", []string{"produce", "t", "--acks", "2"}, []string{"--acks"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, errLine := cli(t, tc.addr, tc.stdin, tc.args...)
			if errLine == "" {
				t.Fatalf("runnel %s succeeded, want a failure", strings.Join(tc.args, " "))
			}
			for _, w := range tc.want {
				if !strings.Contains(errLine, w) {
					t.Errorf("error %q does not say %q", errLine, w)
				}
			}
		})
	}
}
