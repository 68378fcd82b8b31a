package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/runnel-dev/runnel/bench"
)

// comparison is one workload's results on both systems. Its JSON form is
// the contract of `go run . WORKLOAD --format json`.
type comparison struct {
	Workload  string        `json:"workload"`
	Runnel    *bench.Result `json:"runnel"`
	JetStream *bench.Result `json:"jetstream"`
	Ratio     ratio         `json:"ratio"`
	// Runs is how many times each system ran; Runnel and JetStream are
	// each one's median run, and AllRuns has every run's figures.
	Runs    int                     `json:"runs"`
	AllRuns map[string][]runSummary `json:"all_runs,omitempty"`
	// SameRun, with several runs, is the median over the rounds of
	// runnel's figure over JetStream's in the same round (a round runs
	// each system once, one after the other). On a machine whose load
	// changes from minute to minute it is steadier than Ratio, the ratio
	// of the two medians.
	SameRun *sameRunRatio `json:"same_run_ratio,omitempty"`
}

// sameRunRatio is the median of the rounds' runnel/JetStream ratios.
type sameRunRatio struct {
	RecordsPerSec float64 `json:"records_per_sec"`
	P99           float64 `json:"p99"`
}

// sameRunRatios pairs runnel's and JetStream's runs round by round and
// returns the medians of their ratios, or nil for fewer than two rounds.
// Rounds whose JetStream figure is 0 are left out of that ratio.
func sameRunRatios(r, j []runSummary) *sameRunRatio {
	if len(r) < 2 || len(r) != len(j) {
		return nil
	}
	var rate, p99 []float64
	for i := range r {
		if j[i].RecordsPerSec > 0 {
			rate = append(rate, r[i].RecordsPerSec/j[i].RecordsPerSec)
		}
		if j[i].LatencyMS.P99 > 0 {
			p99 = append(p99, r[i].LatencyMS.P99/j[i].LatencyMS.P99)
		}
	}
	return &sameRunRatio{RecordsPerSec: medianOf(rate), P99: medianOf(p99)}
}

// medianOf returns the median of xs, the mean of the middle two for an
// even count, and 0 for none.
func medianOf(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	xs = slices.Clone(xs)
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// runSummary is one run's figures.
type runSummary struct {
	RecordsPerSec float64       `json:"records_per_sec"`
	LatencyMS     bench.Latency `json:"latency_ms"`
}

// ratio is runnel's figure over JetStream's: above 1 runnel moved more
// records per second, below 1 runnel's latency was lower. A ratio whose
// JetStream figure is 0 is null.
type ratio struct {
	RecordsPerSec *float64 `json:"records_per_sec"`
	P50           *float64 `json:"p50"`
	P90           *float64 `json:"p90"`
	P99           *float64 `json:"p99"`
	P999          *float64 `json:"p999"`
	Max           *float64 `json:"max"`
}

func newComparison(workload string, r, j *bench.Result) *comparison {
	div := func(a, b float64) *float64 {
		if b == 0 {
			return nil
		}
		q := a / b
		return &q
	}
	rl, jl := r.LatencyMS, j.LatencyMS
	return &comparison{
		Workload:  workload,
		Runnel:    r,
		JetStream: j,
		Ratio: ratio{
			RecordsPerSec: div(r.RecordsPerSec, j.RecordsPerSec),
			P50:           div(rl.P50, jl.P50),
			P90:           div(rl.P90, jl.P90),
			P99:           div(rl.P99, jl.P99),
			P999:          div(rl.P999, jl.P999),
			Max:           div(rl.Max, jl.Max),
		},
	}
}

// writeDir writes c as DIR/WORKLOAD.json with plots of both sides,
// DIR/WORKLOAD-latency.svg and DIR/WORKLOAD-throughput.svg, and returns
// the paths written.
func (c *comparison) writeDir(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	name := bench.Slug(c.Workload)
	path := filepath.Join(dir, name+".json")
	var buf bytes.Buffer
	if err := c.writeJSON(&buf); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return nil, err
	}
	// The durability note up to its workload qualifier, which the
	// chart's title already says.
	label := func(name string, d bench.Durability) string {
		note, _, _ := strings.Cut(d.Note, ";")
		return name + ", " + note
	}
	labels := []string{label("runnel", c.Runnel.Durability), label("JetStream", c.JetStream.Durability)}
	plots, err := bench.WritePlots(dir, name, labels, []*bench.Result{c.Runnel, c.JetStream})
	return append([]string{path}, plots...), err
}

func (c *comparison) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(c)
}

// writeTable writes the two results side by side for a person to read.
func (c *comparison) writeTable(w io.Writer) error {
	r, j := c.Runnel, c.JetStream
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	loop := "closed loop"
	if r.OfferedRate > 0 {
		loop = fmt.Sprintf("open loop at %.0f records/s", r.OfferedRate)
	}
	size := 0.0
	if r.Records > 0 {
		size = float64(r.Bytes) / float64(r.Records)
	}
	runs := ""
	if c.Runs > 1 {
		runs = fmt.Sprintf(", median of %d runs", c.Runs)
	}
	fmt.Fprintf(tw, "%s: %d records of %.0f B, %d replica(s), %s%s\n\n", c.Workload, r.Records, size, r.Durability.Replicas, loop, runs)
	fmt.Fprintf(tw, "\trunnel\tjetstream\trunnel/jetstream\n")
	row := func(name, format string, a, b float64, q *float64) {
		fmt.Fprintf(tw, "%s\t"+format+"\t"+format+"\t%s\n", name, a, b, ratioString(q))
	}
	row("records/s", "%.0f", r.RecordsPerSec, j.RecordsPerSec, c.Ratio.RecordsPerSec)
	row("MB/s", "%.1f", r.MBPerSec, j.MBPerSec, c.Ratio.RecordsPerSec)
	row("p50 ms", "%.2f", r.LatencyMS.P50, j.LatencyMS.P50, c.Ratio.P50)
	row("p90 ms", "%.2f", r.LatencyMS.P90, j.LatencyMS.P90, c.Ratio.P90)
	row("p99 ms", "%.2f", r.LatencyMS.P99, j.LatencyMS.P99, c.Ratio.P99)
	row("p99.9 ms", "%.2f", r.LatencyMS.P999, j.LatencyMS.P999, c.Ratio.P999)
	row("max ms", "%.2f", r.LatencyMS.Max, j.LatencyMS.Max, c.Ratio.Max)
	fmt.Fprintf(tw, "seconds\t%.2f\t%.2f\t\n", r.Seconds, j.Seconds)
	if c.Runs > 1 {
		fmt.Fprintf(tw, "all runs, records/s\t%s\t%s\t\n", allRuns(c.AllRuns["runnel"]), allRuns(c.AllRuns["jetstream"]))
		fmt.Fprintf(tw, "all runs, p99 ms\t%s\t%s\t\n", allP99(c.AllRuns["runnel"]), allP99(c.AllRuns["jetstream"]))
	}
	if c.SameRun != nil {
		fmt.Fprintf(tw, "same-run ratio, median\trecords/s %.2f\tp99 %.2f\t\n", c.SameRun.RecordsPerSec, c.SameRun.P99)
	}
	fmt.Fprintf(tw, "durability\t%s\t%s\t\n", durability(r.Durability), durability(j.Durability))
	fmt.Fprintf(tw, "fsyncs\t%s\t%s\t\n", fsyncs(r.Durability), fsyncs(j.Durability))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nrunnel:    %s\njetstream: %s\n", r.Environment.Target, j.Environment.Target)
	e := r.Environment
	_, err := fmt.Fprintf(w, "machine:   %s, %d cores, %s, %s, commit %s\n", e.CPU, e.Cores, e.OS, e.GoVersion, e.Commit)
	return err
}

func ratioString(q *float64) string {
	if q == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f", *q)
}

func durability(d bench.Durability) string {
	return fmt.Sprintf("acks=%s, %s", d.Acks, d.Note)
}

func fsyncs(d bench.Durability) string {
	if d.Fsyncs <= 0 {
		return "-"
	}
	return fmt.Sprintf("%d (%.0f/s, %.0f records/fsync)", d.Fsyncs, d.FsyncsPerSec, d.RecordsPerFsync)
}

func allRuns(runs []runSummary) string {
	var parts []string
	for _, r := range runs {
		parts = append(parts, fmt.Sprintf("%.0f", r.RecordsPerSec))
	}
	return strings.Join(parts, " ")
}

func allP99(runs []runSummary) string {
	var parts []string
	for _, r := range runs {
		parts = append(parts, fmt.Sprintf("%.2f", r.LatencyMS.P99))
	}
	return strings.Join(parts, " ")
}
