package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Result is what one workload measured. Its JSON form is the contract of
// `runnel bench --format json`.
type Result struct {
	Workload      string  `json:"workload"`
	Records       int64   `json:"records"`
	Bytes         int64   `json:"bytes"`
	Seconds       float64 `json:"seconds"`
	RecordsPerSec float64 `json:"records_per_sec"`
	MBPerSec      float64 `json:"mb_per_sec"`
	// OfferedRate is the open-loop rate in records/s, 0 for closed loop.
	OfferedRate float64 `json:"offered_rate,omitempty"`
	// LatencyMS is the latency distribution in milliseconds: for produce,
	// from the record's due time (open loop) or its Produce call (closed
	// loop) to its acknowledgement.
	LatencyMS   Latency     `json:"latency_ms"`
	Durability  Durability  `json:"durability"`
	Environment Environment `json:"environment"`
	// Throughput is records acknowledged in each second of the run.
	Throughput []int64 `json:"throughput_per_sec,omitempty"`
	// WorstLatencyMS is, for each second of the run, the longest latency
	// of a record acknowledged in it (produce only): where in the run the
	// tail of LatencyMS comes from.
	WorstLatencyMS []float64 `json:"worst_latency_ms_per_sec,omitempty"`

	// latencies and timeline, when set, are the full distribution and
	// the finer timeline behind LatencyMS and Throughput, for plots.
	latencies *latencies
	timeline  *timeline
}

// Latency is a latency distribution in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// Durability says what an acknowledgement promised in the run.
type Durability struct {
	// Acks is the produce acks level: none, leader or all.
	Acks string `json:"acks"`
	// Replicas is the topic's replication factor.
	Replicas int `json:"replicas"`
	// Fsync says whether an acknowledged write was fsynced (on a majority
	// of replicas in a cluster) before the acknowledgement.
	Fsync bool `json:"fsync"`
	// Fsyncs is the fsyncs the brokers counted during the run, when known.
	Fsyncs int64 `json:"fsyncs,omitempty"`
	// FsyncsPerSec is Fsyncs over the run's duration. RecordsPerFsync is
	// the records one fsync made durable on one node: each record is
	// fsynced once on each of its replicas, so it is records × replicas /
	// fsyncs.
	FsyncsPerSec    float64 `json:"fsyncs_per_sec,omitempty"`
	RecordsPerFsync float64 `json:"records_per_fsync,omitempty"`
	// Note is a free-form qualifier, such as "one process, three nodes".
	Note string `json:"note,omitempty"`
}

// Environment is the machine and build a result was measured on.
type Environment struct {
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	GoVersion string `json:"go_version"`
	Commit    string `json:"git_commit"`
	OS        string `json:"os"`
	Target    string `json:"target"`
}

// CurrentEnvironment describes this machine and binary. target says what
// was measured: "embedded", "cluster of 3 (local)", or broker addresses.
func CurrentEnvironment(target string) Environment {
	env := Environment{
		CPU:       cpuModel(),
		Cores:     runtime.NumCPU(),
		GoVersion: runtime.Version(),
		OS:        runtime.GOOS + "/" + runtime.GOARCH,
		Target:    target,
		Commit:    "unknown",
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, dirty string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
		if rev != "" {
			env.Commit = rev + dirty
			return env
		}
	}
	// Built without VCS stamping (go run, -buildvcs=false): ask git about
	// the working directory, which is the checkout when run from it.
	if out, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
		env.Commit = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			env.Commit += "+dirty"
		}
	}
	return env
}

// cpuModel reads the CPU model name on Linux, or says it is unknown.
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(data)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// WriteJSON writes r as one indented JSON object.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes r for a person to read.
func (r *Result) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "workload\t%s\n", r.Workload)
	fmt.Fprintf(tw, "records\t%d in %.2fs\n", r.Records, r.Seconds)
	if r.OfferedRate > 0 {
		fmt.Fprintf(tw, "offered\t%.0f records/s (open loop)\n", r.OfferedRate)
	}
	if r.Bytes > 0 {
		fmt.Fprintf(tw, "throughput\t%.0f records/s, %.1f MB/s\n", r.RecordsPerSec, r.MBPerSec)
	} else {
		fmt.Fprintf(tw, "throughput\t%.0f/s\n", r.RecordsPerSec)
	}
	l := r.LatencyMS
	fmt.Fprintf(tw, "latency ms\tp50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f\n", l.P50, l.P90, l.P99, l.P999, l.Max)
	d := r.Durability
	fs := "no fsync before ack"
	if d.Fsync {
		fs = "fsync before ack"
	}
	fmt.Fprintf(tw, "durability\tacks=%s, %d replica(s), %s", d.Acks, d.Replicas, fs)
	if d.Note != "" {
		fmt.Fprintf(tw, ", %s", d.Note)
	}
	fmt.Fprintln(tw)
	if d.Fsyncs > 0 {
		fmt.Fprintf(tw, "fsyncs\t%d (%.0f/s, %.0f records/fsync)\n", d.Fsyncs, d.FsyncsPerSec, d.RecordsPerFsync)
	}
	e := r.Environment
	fmt.Fprintf(tw, "environment\t%s, %d cores, %s, %s, commit %s\n", e.CPU, e.Cores, e.GoVersion, e.Target, shortCommit(e.Commit))
	return tw.Flush()
}

func shortCommit(c string) string {
	if len(c) >= 40 {
		return c[:12] + c[40:]
	}
	return c
}

// SetFsyncs fills in the fsync figures from a count taken over the run.
func (r *Result) SetFsyncs(n int64) {
	r.Durability.Fsyncs = n
	if n > 0 && r.Seconds > 0 {
		r.Durability.FsyncsPerSec = float64(n) / r.Seconds
		r.Durability.RecordsPerFsync = float64(r.Records) * float64(max(r.Durability.Replicas, 1)) / float64(n)
	}
}

// latencies is a concurrent latency histogram, in microseconds from 1 µs
// to 10 minutes with 3 significant digits.
type latencies struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

func newLatencies() *latencies {
	return &latencies{h: hdrhistogram.New(1, int64(10*time.Minute/time.Microsecond), 3)}
}

func (l *latencies) record(d time.Duration) {
	us := max(d.Microseconds(), 1)
	l.mu.Lock()
	// Values above the range are clamped rather than dropped.
	if err := l.h.RecordValue(us); err != nil {
		l.h.RecordValue(l.h.HighestTrackableValue())
	}
	l.mu.Unlock()
}

func (l *latencies) summary() Latency {
	l.mu.Lock()
	defer l.mu.Unlock()
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Latency{
		P50:  ms(l.h.ValueAtQuantile(50)),
		P90:  ms(l.h.ValueAtQuantile(90)),
		P99:  ms(l.h.ValueAtQuantile(99)),
		P999: ms(l.h.ValueAtQuantile(99.9)),
		Max:  ms(l.h.Max()),
	}
}

// timelineStep is the resolution at which a timeline counts events.
const timelineStep = 100 * time.Millisecond

// timeline counts events in each timelineStep since the start of a run.
type timeline struct {
	mu   sync.Mutex
	bins []int64
	// worst is the longest latency noted in each bin (addLatency).
	worst []time.Duration
}

func newTimeline() *timeline { return &timeline{} }

func (t *timeline) add(since time.Duration) {
	b := int(max(since, 0) / timelineStep)
	t.mu.Lock()
	for len(t.bins) <= b {
		t.bins = append(t.bins, 0)
	}
	t.bins[b]++
	t.mu.Unlock()
}

// addLatency counts an event, as add does, that took lat.
func (t *timeline) addLatency(since, lat time.Duration) {
	b := int(max(since, 0) / timelineStep)
	t.mu.Lock()
	for len(t.bins) <= b {
		t.bins = append(t.bins, 0)
	}
	t.bins[b]++
	for len(t.worst) <= b {
		t.worst = append(t.worst, 0)
	}
	t.worst[b] = max(t.worst[b], lat)
	t.mu.Unlock()
}

// worstPerSecond returns the longest latency noted in each whole second of
// the run, in milliseconds, or nil when none was.
func (t *timeline) worstPerSecond() []float64 {
	per := int(time.Second / timelineStep)
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.worst) == 0 {
		return nil
	}
	out := make([]float64, (len(t.worst)+per-1)/per)
	for i, d := range t.worst {
		out[i/per] = max(out[i/per], float64(d.Microseconds())/1000)
	}
	return out
}

// perSecond returns the events in each whole second of the run; the last
// second may be partial.
func (t *timeline) perSecond() []int64 {
	return t.rebin(time.Second)
}

// rebin returns the events in each step (a multiple of timelineStep).
func (t *timeline) rebin(step time.Duration) []int64 {
	per := max(int(step/timelineStep), 1)
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]int64, (len(t.bins)+per-1)/per)
	for i, n := range t.bins {
		out[i/per] += n
	}
	return out
}
