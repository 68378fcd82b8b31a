package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/runnel-dev/runnel/broker"
)

// TestProducePrintOffsets: --print-offsets prints one JSON line per
// acknowledged record with its input line, partition and offset.
func TestProducePrintOffsets(t *testing.T) {
	addr := startBroker(t, broker.Options{})
	mustCLI(t, addr, "", "topic", "create", "t", "-p", "2")
	const n = 500
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, "k%d:%d\n", i%7, i)
	}
	out := mustCLI(t, addr, in.String(), "produce", "t", "--key-sep", ":", "--print-offsets", "--request-timeout", "5s")
	seen := map[int64]bool{}
	next := map[int32]int64{}
	for line := range strings.Lines(out) {
		var a struct {
			Line      int64 `json:"line"`
			Partition int32 `json:"partition"`
			Offset    int64 `json:"offset"`
		}
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if a.Line < 1 || a.Line > n || seen[a.Line] {
			t.Fatalf("line %d reported twice or out of range", a.Line)
		}
		seen[a.Line] = true
		// One producer, so each partition's acknowledgements come in
		// offset order.
		if a.Offset != next[a.Partition] {
			t.Fatalf("partition %d: offset %d, want %d", a.Partition, a.Offset, next[a.Partition])
		}
		next[a.Partition]++
	}
	if len(seen) != n {
		t.Fatalf("%d acknowledgements printed, want %d", len(seen), n)
	}
}

func TestProduceFlagErrors(t *testing.T) {
	addr := startBroker(t, broker.Options{})
	mustCLI(t, addr, "", "topic", "create", "t")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--request-timeout", "0s"}, "--request-timeout 0s: use a positive duration"},
		{[]string{"--log-level", "loud"}, `--log-level "loud": use debug, info, warn or error`},
	} {
		_, _, errLine := cli(t, addr, "x\n", append([]string{"produce", "t"}, tc.args...)...)
		if !strings.Contains(errLine, tc.want) {
			t.Errorf("produce %v: %q, want %q", tc.args, errLine, tc.want)
		}
	}
}
