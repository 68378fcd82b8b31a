package bench

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// WriteDir writes r into dir (created if need be) as NAME.json, with the
// plots NAME-latency.svg (the latency percentile curve) and
// NAME-throughput.svg (records per second over the run), where NAME is
// the workload's name in lower case with dashes. It returns the paths
// written.
func (r *Result) WriteDir(dir string) ([]string, error) {
	name := Slug(r.Workload)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name+".json")
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := r.WriteJSON(f); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	plots, err := WritePlots(dir, name, []string{r.Workload}, []*Result{r})
	return append([]string{path}, plots...), err
}

// WritePlots writes the latency percentile curves and the throughput over
// time of results, one line each under its label, to dir/NAME-latency.svg
// and dir/NAME-throughput.svg, and returns the paths written. Results
// without a latency distribution (read back from JSON) have no curve.
func WritePlots(dir, name string, labels []string, results []*Result) ([]string, error) {
	if len(labels) != len(results) {
		return nil, fmt.Errorf("plots: %d labels for %d results", len(labels), len(results))
	}
	lat := chart{Title: name + ": latency by percentile", XLabel: "percentile", YLabel: "latency (ms)", XTicks: percentileTicks}
	tput := chart{Title: name + ": throughput over time", XLabel: "seconds since start", YLabel: "records/s"}
	for i, r := range results {
		if r.latencies != nil {
			x, y := r.latencies.curve(200)
			lat.Lines = append(lat.Lines, line{Label: labels[i], X: x, Y: y})
		}
		x, y := r.throughputSeries()
		tput.Lines = append(tput.Lines, line{Label: labels[i], X: x, Y: y})
	}
	var paths []string
	for _, p := range []struct {
		suffix string
		c      *chart
	}{{"-latency.svg", &lat}, {"-throughput.svg", &tput}} {
		path := filepath.Join(dir, name+p.suffix)
		f, err := os.Create(path)
		if err != nil {
			return paths, err
		}
		err = p.c.writeSVG(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return paths, fmt.Errorf("%s: %w", path, err)
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// Slug turns a workload name into a file name: lower case letters and
// digits, other runs of characters replaced by one dash.
func Slug(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
		} else {
			dash = true
		}
	}
	if b.Len() == 0 {
		return "result"
	}
	return b.String()
}

// The percentile axis is logarithmic in 1/(1-q), so that each further
// nine gets the same width: x = log10(1/(1-q)).
var percentileTicks = []tick{
	{0, "0%"}, {1, "90%"}, {2, "99%"}, {3, "99.9%"}, {4, "99.99%"}, {5, "99.999%"},
}

// curve returns the latency at n+1 points of the percentile axis, from the
// 0th percentile to as many nines as the count of values can tell apart
// (at most five), in milliseconds: x is log10(1/(1-q)).
func (l *latencies) curve(n int) (x, y []float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	count := l.h.TotalCount()
	if count == 0 {
		return nil, nil
	}
	top := math.Min(5, math.Max(1, math.Log10(float64(count))))
	for i := range n + 1 {
		xi := top * float64(i) / float64(n)
		q := 100 * (1 - math.Pow(10, -xi))
		x = append(x, xi)
		y = append(y, float64(l.h.ValueAtQuantile(q))/1000)
	}
	// The ends are the smallest and the largest value seen.
	y[0] = float64(l.h.Min()) / 1000
	y[len(y)-1] = float64(l.h.Max()) / 1000
	return x, y
}

// throughputSeries returns records per second over the run, in steps of
// timelineStep or coarser so that a long run has at most 300 points: x is
// the end of each step in seconds since the start. The last step, cut
// short by the end of the run, is scaled by its actual length; when it
// is half a step or less it joins the step before, so that a few records
// in a sliver of time do not draw a spike.
func (r *Result) throughputSeries() (x, y []float64) {
	var counts []int64
	step := time.Second
	if r.timeline != nil {
		step = timelineStep
		if n := len(r.timeline.bins); n > 300 {
			step = timelineStep * time.Duration((n+299)/300)
		}
		counts = r.timeline.rebin(step)
	} else {
		counts = r.Throughput
	}
	s := step.Seconds()
	for i, c := range counts {
		lo, hi := float64(i)*s, float64(i+1)*s
		if i == len(counts)-1 && r.Seconds > lo && r.Seconds < hi {
			hi = r.Seconds
			if hi-lo <= s/2 && i > 0 {
				// Fold into the previous step.
				prev := y[len(y)-1] * s
				x, y = x[:len(x)-1], y[:len(y)-1]
				lo -= s
				c += int64(math.Round(prev))
			}
		}
		x = append(x, hi)
		y = append(y, float64(c)/(hi-lo))
	}
	return x, y
}
