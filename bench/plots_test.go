package bench

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestNiceTicks(t *testing.T) {
	labels := func(ts []tick) []string {
		var out []string
		for _, t := range ts {
			out = append(out, t.Label)
		}
		return out
	}
	for _, tc := range []struct {
		lo, hi float64
		n      int
		want   []string
	}{
		{0, 10, 5, []string{"0", "2", "4", "6", "8", "10"}},
		{0, 9.3, 5, []string{"0", "2", "4", "6", "8", "10"}},
		{0, 0.7, 6, []string{"0", "0.2", "0.4", "0.6", "0.8"}},
		{0, 123456, 6, []string{"0", "50k", "100k", "150k"}},
		{0, 3.1e6, 6, []string{"0", "1M", "2M", "3M", "4M"}},
		{0, 3.1e6, 10, []string{"0", "500k", "1M", "1.5M", "2M", "2.5M", "3M", "3.5M"}},
		{1.5, 4.2, 4, []string{"1", "2", "3", "4", "5"}},
		{1.5, 4.2, 8, []string{"1.5", "2", "2.5", "3", "3.5", "4", "4.5"}},
		{0, 0, 5, []string{"0", "0.2", "0.4", "0.6", "0.8", "1"}},
	} {
		got := labels(niceTicks(tc.lo, tc.hi, tc.n))
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("niceTicks(%v, %v, %d) (-want +got):\n%s", tc.lo, tc.hi, tc.n, diff)
		}
	}
}

// svgDoc is the part of a chart's SVG the tests look at.
type svgDoc struct {
	XMLName   xml.Name `xml:"svg"`
	Texts     []string `xml:"text"`
	Polylines []struct {
		Points string `xml:"points,attr"`
		Title  string `xml:"title"`
	} `xml:"polyline"`
}

func parseSVG(t *testing.T, r io.Reader) svgDoc {
	t.Helper()
	var doc svgDoc
	if err := xml.NewDecoder(r).Decode(&doc); err != nil {
		t.Fatalf("not well-formed SVG: %v", err)
	}
	return doc
}

func TestChartSVG(t *testing.T) {
	c := chart{
		Title:  "a <b> & c",
		XLabel: "x",
		YLabel: "y",
		Lines: []line{
			{Label: "one", X: []float64{0, 1, 2}, Y: []float64{5, 7, 6}},
			{Label: "two & more", X: []float64{0, 2}, Y: []float64{1, 2}},
		},
	}
	var buf bytes.Buffer
	if err := c.writeSVG(&buf); err != nil {
		t.Fatal(err)
	}
	doc := parseSVG(t, &buf)
	if len(doc.Polylines) != 2 {
		t.Fatalf("%d polylines, want 2", len(doc.Polylines))
	}
	for i, want := range []int{3, 2} {
		if n := len(strings.Fields(doc.Polylines[i].Points)); n != want {
			t.Errorf("line %d: %d points, want %d", i, n, want)
		}
	}
	if doc.Polylines[1].Title != "two & more" {
		t.Errorf("line title %q", doc.Polylines[1].Title)
	}
	if doc.Texts[0] != "a <b> & c" {
		t.Errorf("title %q", doc.Texts[0])
	}
	// The highest point is drawn at or below the top of the plot area.
	for _, p := range strings.Fields(doc.Polylines[0].Points) {
		var x, y float64
		if _, err := fmtSscanPoint(p, &x, &y); err != nil {
			t.Fatal(err)
		}
		if x < marginLeft || x > chartWidth-marginRight || y < marginTop || y > chartHeight-marginBottom {
			t.Errorf("point %s outside the plot area", p)
		}
	}

	bad := []chart{
		{Lines: []line{{X: []float64{1, 2}, Y: []float64{1}}}},
		{Lines: []line{{X: []float64{1}, Y: []float64{math.NaN()}}}},
	}
	for _, c := range bad {
		if err := c.writeSVG(io.Discard); err == nil {
			t.Errorf("chart %+v drawn without an error", c.Lines)
		}
	}
	// A chart without lines is still a well-formed, empty chart.
	buf.Reset()
	empty := chart{Title: "empty", XTicks: percentileTicks}
	if err := empty.writeSVG(&buf); err != nil {
		t.Fatal(err)
	}
	parseSVG(t, &buf)
}

func fmtSscanPoint(p string, x, y *float64) (int, error) {
	xs, ys, ok := strings.Cut(p, ",")
	if !ok {
		return 0, errors.New("point " + p + " has no comma")
	}
	var err error
	if *x, err = parseFloat(xs); err != nil {
		return 0, err
	}
	if *y, err = parseFloat(ys); err != nil {
		return 1, err
	}
	return 2, nil
}

func parseFloat(s string) (float64, error) {
	var f float64
	err := json.Unmarshal([]byte(s), &f)
	return f, err
}

func TestLatencyCurve(t *testing.T) {
	l := newLatencies()
	for i := 1; i <= 10000; i++ {
		l.record(time.Duration(i) * time.Microsecond * 100) // 0.1 ms to 1 s
	}
	x, y := l.curve(100)
	if len(x) != 101 || len(y) != 101 {
		t.Fatalf("%d and %d points, want 101", len(x), len(y))
	}
	if x[0] != 0 || math.Abs(x[100]-4) > 1e-9 {
		t.Errorf("x from %v to %v, want 0 to 4 (10,000 values tell four nines)", x[0], x[100])
	}
	for i := 1; i < len(y); i++ {
		if y[i] < y[i-1] {
			t.Fatalf("curve falls at point %d: %v after %v", i, y[i], y[i-1])
		}
	}
	if math.Abs(y[0]-0.1) > 0.001 || math.Abs(y[100]-1000) > 1 {
		t.Errorf("curve from %v ms to %v ms, want 0.1 to 1000", y[0], y[100])
	}
	// The median is at x = log10(2).
	mid := l.summary().P50
	if mid < 499 || mid > 501 {
		t.Errorf("p50 %v ms, want 500", mid)
	}
	if x, y := newLatencies().curve(10); x != nil || y != nil {
		t.Errorf("empty histogram: curve %v %v, want none", x, y)
	}
}

func TestThroughputSeries(t *testing.T) {
	tl := newTimeline()
	// One event every 10 ms for 2.35 s: 235 events.
	for i := range 235 {
		tl.add(time.Duration(i) * 10 * time.Millisecond)
	}
	if got := tl.perSecond(); !cmp.Equal(got, []int64{100, 100, 35}) {
		t.Errorf("per second %v, want [100 100 35]", got)
	}
	integral := func(x, y []float64) float64 {
		var total, prev float64
		for i := range x {
			total += y[i] * (x[i] - prev)
			prev = x[i]
		}
		return total
	}
	r := &Result{Seconds: 2.35, timeline: tl}
	x, y := r.throughputSeries()
	// 23 steps of 100 ms, the last one 150 ms long: its 50 ms tail
	// joined it.
	if len(x) != 23 {
		t.Fatalf("%d points, want 23", len(x))
	}
	if total := integral(x, y); math.Abs(total-235) > 1e-6 {
		t.Errorf("the series integrates to %v events, want 235", total)
	}
	for i := range y {
		if math.Abs(y[i]-100) > 1e-6 {
			t.Errorf("point %d: %v records/s, want 100", i, y[i])
		}
	}
	if math.Abs(x[22]-2.35) > 1e-9 {
		t.Errorf("last point at %v s, want 2.35", x[22])
	}
	// A longer tail keeps its own point, scaled by its length.
	r.Seconds = 2.38
	tl.add(2370 * time.Millisecond)
	x, y = r.throughputSeries()
	if len(x) != 24 || math.Abs(x[23]-2.38) > 1e-9 || math.Abs(y[23]-6/0.08) > 1e-6 {
		t.Errorf("last point (%v, %v) of %d, want (2.38, 75) of 24", x[len(x)-1], y[len(y)-1], len(x))
	}
	// A long run is drawn with at most 300 points.
	long := newTimeline()
	long.add(99 * time.Second)
	x, _ = (&Result{Seconds: 100, timeline: long}).throughputSeries()
	if len(x) > 300 {
		t.Errorf("%d points for a 100 s run, want at most 300", len(x))
	}
}

func TestSlug(t *testing.T) {
	for in, want := range map[string]string{
		"produce":                   "produce",
		"group consume (3 members)": "group-consume-3-members",
		"  e2e ":                    "e2e",
		"()":                        "result",
	} {
		if got := Slug(in); got != want {
			t.Errorf("Slug(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWriteDir(t *testing.T) {
	lat, tl := newLatencies(), newTimeline()
	for i := range 1000 {
		lat.record(time.Duration(i+1) * time.Millisecond)
		tl.add(time.Duration(i) * time.Millisecond)
	}
	r := &Result{
		Workload: "group consume (2 members)", Records: 1000, Bytes: 100000, Seconds: 1,
		RecordsPerSec: 1000, MBPerSec: 0.1, LatencyMS: lat.summary(), Throughput: tl.perSecond(),
		Durability:  Durability{Acks: "all", Replicas: 1, Fsync: true},
		Environment: Environment{CPU: "test", Cores: 2},
		latencies:   lat, timeline: tl,
	}
	dir := filepath.Join(t.TempDir(), "out")
	paths, err := r.WriteDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"group-consume-2-members.json", "group-consume-2-members-latency.svg", "group-consume-2-members-throughput.svg"}
	var got []string
	for _, p := range paths {
		got = append(got, filepath.Base(p))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("files (-want +got):\n%s", diff)
	}
	data, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"workload", "records", "records_per_sec", "mb_per_sec", "latency_ms", "durability", "environment"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON has no %q", k)
		}
	}
	for _, p := range paths[1:] {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		doc := parseSVG(t, f)
		f.Close()
		if len(doc.Polylines) != 1 || doc.Polylines[0].Title != r.Workload {
			t.Errorf("%s: %d lines, want one labelled %q", p, len(doc.Polylines), r.Workload)
		}
	}
}
