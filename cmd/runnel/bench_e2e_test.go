package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runnel-dev/runnel/broker"
)

// TestBenchJSON runs each bench workload briefly against a broker and
// checks the fields of its JSON result.
func TestBenchJSON(t *testing.T) {
	addr := startBroker(t, broker.Options{HTTPAddr: "127.0.0.1:0"})
	for _, tc := range []struct {
		args     []string
		workload string
		records  float64
		acks     string
	}{
		{[]string{"bench", "produce", "--records", "300", "--size", "16384", "--acks", "none"}, "produce", 300, "none"},
		{[]string{"bench", "e2e", "--records", "500", "--rate", "5000", "--partitions", "2", "--warmup", "50"}, "e2e", 500, "all"},
		{[]string{"bench", "replay", "--records", "400", "--partitions", "2"}, "consume", 400, "all"},
		{[]string{"bench", "consume", "--records", "400", "--partitions", "2", "--group", "--members", "2"}, "group consume (2 members)", 400, "all"},
	} {
		t.Run(strings.Join(tc.args[1:], " "), func(t *testing.T) {
			out := mustCLI(t, addr, "", append(tc.args, "--format", "json")...)
			var m map[string]any
			if err := json.Unmarshal([]byte(out), &m); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, k := range []string{"workload", "records", "records_per_sec", "mb_per_sec", "latency_ms", "durability", "environment"} {
				if _, ok := m[k]; !ok {
					t.Errorf("no %q in %s", k, out)
				}
			}
			if m["workload"] != tc.workload || m["records"] != tc.records {
				t.Errorf("workload %v, records %v; want %q and %v", m["workload"], m["records"], tc.workload, tc.records)
			}
			lat, _ := m["latency_ms"].(map[string]any)
			for _, k := range []string{"p50", "p90", "p99", "p999", "max"} {
				if _, ok := lat[k].(float64); !ok {
					t.Errorf("latency_ms has no %q: %v", k, lat)
				}
			}
			if d, _ := m["durability"].(map[string]any); d["acks"] != tc.acks {
				t.Errorf("durability %v: want acks %s", d, tc.acks)
			}
		})
	}
}

func TestBenchOut(t *testing.T) {
	addr := startBroker(t, broker.Options{})
	dir := filepath.Join(t.TempDir(), "results")
	_, stderr, errLine := cli(t, addr, "", "bench", "e2e", "--records", "300", "--rate", "3000", "--out", dir)
	if errLine != "" {
		t.Fatal(errLine)
	}
	for _, name := range []string{"e2e.json", "e2e-latency.svg", "e2e-throughput.svg"} {
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(stderr, "wrote "+path) {
			t.Errorf("stderr does not name %s:\n%s", path, stderr)
		}
		if strings.HasSuffix(name, ".svg") && !strings.Contains(string(data), "<polyline") {
			t.Errorf("%s has no line", name)
		}
	}
}

func TestBenchFlagErrors(t *testing.T) {
	addr := startBroker(t, broker.Options{})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "e2e", "--size", "4"}, "--size 4: use 8 or more bytes"},
		{[]string{"bench", "e2e", "--rate", "-1"}, "--rate -1"},
		{[]string{"bench", "e2e", "--format", "yaml"}, `--format "yaml"`},
		{[]string{"bench", "cron", "--out", "x"}, "--out: runnel bench cron does not use it"},
		{[]string{"bench", "queue", "--acks", "none"}, "--acks: runnel bench queue does not use it"},
		{[]string{"bench", "consume", "--acks", "none"}, "--acks: runnel bench consume does not use it"},
		{[]string{"bench", "consume", "--members", "2"}, "--members: applies only with --group"},
		{[]string{"bench", "commits", "--acks", "none"}, "--acks: runnel bench commits does not use it"},
		{[]string{"bench", "commits", "--linger", "1ms"}, "--linger: runnel bench commits does not use it"},
	} {
		_, _, errLine := cli(t, addr, "", tc.args...)
		if !strings.Contains(errLine, tc.want) {
			t.Errorf("%v: error %q, want it to contain %q", tc.args, errLine, tc.want)
		}
	}
}

// TestBenchProgressOnlyOnATerminal: output that is not a terminal gets no
// progress line.
func TestBenchProgressOnlyOnATerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, w := range []io.Writer{&bytes.Buffer{}, f} {
		progress, clear := progressLine(w, 10)
		if progress != nil {
			t.Errorf("%T: a progress callback for output that is not a terminal", w)
		}
		clear()
	}
	if st, _ := f.Stat(); st.Size() != 0 {
		t.Errorf("%d bytes written to a file", st.Size())
	}
}
