package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/bench"
)

// runJSON runs the command with args and --format json and decodes its
// output.
func runJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(t.Context(), append(args, "--format", "json"), &out, &errOut); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, errOut.String())
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out.String())
	}
	return m
}

func TestCompareJSON(t *testing.T) {
	tests := []struct {
		args     []string
		records  float64
		replicas float64
		jsFsync  bool
	}{
		{[]string{"produce", "--records", "2000", "--size", "100"}, 2000, 1, false},
		{[]string{"produce", "--records", "1000", "--rate", "5000", "--partitions", "2", "--jetstream-sync", "always", "--conn", "inprocess", "--linger", "1ms"}, 1000, 1, true},
		{[]string{"consume", "--records", "3000", "--partitions", "3", "--max-in-flight", "200"}, 3000, 1, false},
		{[]string{"e2e", "--records", "1000", "--rate", "5000", "--partitions", "2"}, 1000, 1, false},
		{[]string{"consume", "--records", "2000", "--partitions", "3", "--group", "--members", "2"}, 2000, 1, false},
	}
	if !testing.Short() {
		tests = append(tests, struct {
			args     []string
			records  float64
			replicas float64
			jsFsync  bool
		}{[]string{"produce", "--records", "2000", "--replicas", "3", "--partitions", "2"}, 2000, 3, false})
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			m := runJSON(t, tt.args...)
			if m["workload"] != tt.args[0] {
				t.Errorf("workload %v, want %s", m["workload"], tt.args[0])
			}
			for side, fsync := range map[string]bool{"runnel": true, "jetstream": tt.jsFsync} {
				r, ok := m[side].(map[string]any)
				if !ok {
					t.Fatalf("no %s object: %v", side, m)
				}
				for _, k := range []string{"workload", "records", "records_per_sec", "mb_per_sec", "latency_ms", "durability", "environment"} {
					if _, ok := r[k]; !ok {
						t.Errorf("%s has no %q", side, k)
					}
				}
				if r["records"] != tt.records {
					t.Errorf("%s records %v, want %v", side, r["records"], tt.records)
				}
				d, _ := r["durability"].(map[string]any)
				if d["replicas"] != tt.replicas || d["fsync"] != fsync || d["note"] == "" {
					t.Errorf("%s durability %v: want %v replicas, fsync %v, a note", side, d, tt.replicas, fsync)
				}
			}
			ratio, _ := m["ratio"].(map[string]any)
			for _, k := range []string{"records_per_sec", "p50", "p90", "p99", "p999", "max"} {
				if v, ok := ratio[k].(float64); !ok || v <= 0 {
					t.Errorf("ratio %q is %v", k, ratio[k])
				}
			}
		})
	}
}

func TestCompareTable(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"produce", "--records", "500"}, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	for _, want := range []string{"records/s", "p99.9 ms", "runnel/jetstream", "fsync before ack", "default (no fsync per write)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table has no %q:\n%s", want, out.String())
		}
	}
}

func TestCompareOut(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"replay", "--records", "500", "--out", dir}, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	for _, name := range []string{"consume.json", "consume-latency.svg", "consume-throughput.svg"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(errOut.String(), filepath.Join(dir, name)) {
			t.Errorf("stderr does not name %s:\n%s", name, errOut.String())
		}
		if strings.HasSuffix(name, ".svg") {
			// One line for each side.
			if n := strings.Count(string(data), "<polyline"); n != 2 {
				t.Errorf("%s: %d lines, want 2", name, n)
			}
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if m["workload"] != "consume" || m["runnel"] == nil || m["jetstream"] == nil || m["ratio"] == nil {
			t.Errorf("%s: %v", name, m)
		}
	}
}

func TestParseArgs(t *testing.T) {
	bad := [][]string{
		nil,
		{"--records", "10"},
		{"fetch"},
		{"produce", "--replicas", "2"},
		{"produce", "--records", "0"},
		{"produce", "--jetstream-sync", "sometimes"},
		{"produce", "--conn", "inprocess", "--replicas", "3"},
		{"consume", "--rate", "100"},
		{"produce", "--format", "yaml"},
		{"produce", "extra"},
		{"produce", "--no-such-flag"},
		{"produce", "--runs", "0"},
		{"produce", "--linger", "-1ms"},
		{"e2e", "--size", "7"},
		{"produce", "--runnel-batches-in-flight", "0"},
		{"produce", "--group"},
		{"consume", "--group", "--members", "0"},
	}
	for _, args := range bad {
		if _, err := parseArgs(args, &bytes.Buffer{}); err == nil {
			t.Errorf("%q: parsed", args)
		}
	}
	cfg, err := parseArgs([]string{"produce"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	want := config{workload: "produce", records: 200000, size: 100, partitions: 1, replicas: 1, runnelSync: true, jsSync: "default", batches: 1, members: 3, linger: 5 * time.Millisecond, conn: "tcp", runs: 1, format: "table"}
	if cfg != want {
		t.Errorf("defaults %+v, want %+v", cfg, want)
	}
}

func TestSameRunRatios(t *testing.T) {
	run := func(rate, p99 float64) runSummary {
		return runSummary{RecordsPerSec: rate, LatencyMS: bench.Latency{P99: p99}}
	}
	r := []runSummary{run(100, 10), run(300, 5), run(50, 40), run(80, 1)}
	j := []runSummary{run(10, 20), run(100, 10), run(50, 10), run(0, 0)}
	// Ratios 10, 3, 1 (the last round has no JetStream figure): median 3.
	// p99 ratios 0.5, 0.5, 4: median 0.5.
	got := sameRunRatios(r, j)
	if got == nil || got.RecordsPerSec != 3 || got.P99 != 0.5 {
		t.Errorf("sameRunRatios = %+v, want records/s 3, p99 0.5", got)
	}
	// An even count takes the mean of the middle two.
	got = sameRunRatios(r[:2], j[:2])
	if got == nil || got.RecordsPerSec != 6.5 || got.P99 != 0.5 {
		t.Errorf("two rounds: %+v, want records/s 6.5, p99 0.5", got)
	}
	if sameRunRatios(r[:1], j[:1]) != nil {
		t.Error("one round has a same-run ratio")
	}
}

func TestCompareRuns(t *testing.T) {
	dir := t.TempDir()
	m := runJSON(t, "produce", "--records", "300", "--runs", "3", "--cpuprofile", dir)
	for _, name := range []string{"runnel-1", "runnel-3", "jetstream-1", "jetstream-3"} {
		if st, err := os.Stat(filepath.Join(dir, name+".pprof")); err != nil || st.Size() == 0 {
			t.Errorf("profile %s: %v", name, err)
		}
	}
	if m["runs"] != 3.0 {
		t.Errorf("runs %v, want 3", m["runs"])
	}
	if sr, _ := m["same_run_ratio"].(map[string]any); sr["records_per_sec"] == nil || sr["p99"] == nil {
		t.Errorf("same_run_ratio %v: want records_per_sec and p99", m["same_run_ratio"])
	}
	all, _ := m["all_runs"].(map[string]any)
	for _, side := range []string{"runnel", "jetstream"} {
		runs, _ := all[side].([]any)
		if len(runs) != 3 {
			t.Fatalf("all_runs.%s: %v, want 3 runs", side, all[side])
		}
		// The reported result is the median of the three.
		var rates []float64
		for _, r := range runs {
			rates = append(rates, r.(map[string]any)["records_per_sec"].(float64))
		}
		slices.Sort(rates)
		if got := m[side].(map[string]any)["records_per_sec"]; got != rates[1] {
			t.Errorf("%s records_per_sec %v, want the median of %v", side, got, rates)
		}
	}
}

func TestMedian(t *testing.T) {
	res := func(rate, p99 float64) *bench.Result {
		return &bench.Result{RecordsPerSec: rate, LatencyMS: bench.Latency{P99: p99}}
	}
	runs := []*bench.Result{res(30, 1), res(10, 3), res(20, 2), res(40, 9)}
	if got := median(runs, false); got.RecordsPerSec != 20 {
		t.Errorf("closed loop: median run %+v, want the one at 20/s", got)
	}
	if got := median(runs, true); got.LatencyMS.P99 != 2 {
		t.Errorf("open loop: median run %+v, want the one with p99 2", got)
	}
	if got := median(runs[:1], false); got != runs[0] {
		t.Errorf("one run: %+v", got)
	}
}
