// Command peers runs a bench workload against runnel and against NATS
// JetStream in one run and compares them:
//
//	cd bench/peers && go run . produce --records 200000 --size 100 --format json
//
// Both systems run embedded in this process with their data in temporary
// folders, one after the other (never at once): runnel as one broker, or a
// cluster of three nodes with --replicas 3; JetStream as one nats-server
// with file storage, or three clustered over routes on 127.0.0.1. The
// output has each side's result (the fields of `runnel bench --format
// json`) and their ratios, runnel/JetStream, for records/s and each
// latency percentile.
//
// Durability is labelled on both sides. By default runnel fsyncs before it
// acknowledges (acks=all) and JetStream runs at its default sync setting,
// which acknowledges writes without an fsync per write (it syncs in the
// background every two minutes); --jetstream-sync always makes it fsync
// every write, and --runnel-sync=false stops runnel's fsyncs.
//
// This is a module of its own so that nats-server and nats.go never enter
// runnel's go.mod.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/runnel-dev/runnel/bench"
	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/record"
)

const usage = `usage: go run . WORKLOAD [flags]

Workloads:
  produce   produce --records records of --size bytes: as fast as each
            client takes them (closed loop), or at --rate records/s (open
            loop, latency from each record's due time)
  consume   produce the records, then replay them from the start (one
            reader per partition) and report the read rate (also: replay);
            with --group, read them as a group of --members members
  e2e       produce the records while one reader per partition reads
            them; latency from each record's send time (its due time at
            --rate) until a reader has it

Flags:
`

// config is one comparison, from the command line.
type config struct {
	workload   string
	records    int
	size       int
	partitions int
	replicas   int
	rate       float64
	runnelSync bool
	jsSync     string
	inFlight   int
	batches    int
	group      bool
	members    int
	linger     time.Duration
	runs       int
	profileDir string
	conn       string
	format     string
	out        string
	// run counts the runs of each system, from 1, for profile names.
	run int
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	case err != nil:
		fmt.Fprintf(os.Stderr, "peers: %v\n", err)
		os.Exit(1)
	}
}

// errUsage is a command line that could not be parsed; the flag package
// has already said why.
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseArgs(args, stderr)
	if err != nil {
		return err
	}
	var progress func(side string) func(int64, time.Duration)
	if f, ok := stderr.(*os.File); ok && isTerminal(f) {
		progress = func(side string) func(int64, time.Duration) {
			return func(n int64, elapsed time.Duration) {
				fmt.Fprintf(stderr, "\r%s: %d/%d records, %.0f/s   \033[K", side, n, cfg.records, float64(n)/elapsed.Seconds())
			}
		}
		defer fmt.Fprint(stderr, "\r\033[K")
	}
	cmp, err := compare(ctx, cfg, progress)
	if err != nil {
		return err
	}
	if cfg.format == "json" {
		err = cmp.writeJSON(stdout)
	} else {
		err = cmp.writeTable(stdout)
	}
	if err != nil || cfg.out == "" {
		return err
	}
	paths, err := cmp.writeDir(cfg.out)
	for _, p := range paths {
		fmt.Fprintf(stderr, "wrote %s\n", p)
	}
	return err
}

func parseArgs(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("peers", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	fs.IntVar(&cfg.records, "records", 200000, "records to produce")
	fs.IntVar(&cfg.size, "size", 100, "value size in bytes")
	fs.IntVar(&cfg.partitions, "partitions", 1, "runnel partitions, and as many JetStream streams")
	fs.IntVar(&cfg.replicas, "replicas", 1, "replicas: 1 (one node or server) or 3 (three, clustered in this process)")
	fs.Float64Var(&cfg.rate, "rate", 0, "offered load in records/s, open loop (0: as fast as possible)")
	fs.BoolVar(&cfg.runnelSync, "runnel-sync", true, "runnel fsyncs before it acknowledges (--runnel-sync=false: no fsync)")
	fs.StringVar(&cfg.jsSync, "jetstream-sync", "default", "JetStream sync setting: default (no fsync per write) or always (fsync every write)")
	fs.IntVar(&cfg.inFlight, "max-in-flight", 0, "records produced and not yet acknowledged, at most, on both sides (0: each client's default: runnel buffers 64 MiB, JetStream 4000 publishes)")
	fs.BoolVar(&cfg.group, "group", false, "consume: read as a consumer group (runnel) and a shared durable consumer per stream (JetStream)")
	fs.IntVar(&cfg.members, "members", 3, "consume --group: members of the group")
	fs.IntVar(&cfg.batches, "runnel-batches-in-flight", 1, "produce requests runnel's client keeps in flight per partition (client.MaxInFlight; 1, the default, keeps order across retries)")
	fs.DurationVar(&cfg.linger, "linger", 5*time.Millisecond, "how long runnel's producer waits to fill a batch (runnel bench's default)")
	fs.StringVar(&cfg.conn, "conn", "tcp", "single node: clients connect over loopback tcp, or inprocess (runnel: in-memory listener; JetStream: net.Pipe)")
	fs.StringVar(&cfg.profileDir, "cpuprofile", "", "write a CPU profile of each measured run to `DIR`/runnel-N.pprof and DIR/jetstream-N.pprof")
	fs.IntVar(&cfg.runs, "runs", 1, "runs of each system, alternating which goes first; each side reports its median run")
	fs.StringVar(&cfg.format, "format", "table", "output format: table or json")
	fs.StringVar(&cfg.out, "out", "", "also write the comparison as JSON and plots of both sides (latency percentiles, throughput over time) as SVG into `DIR`")
	if len(args) == 0 || args[0] == "" || args[0][0] == '-' {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			fs.Usage()
			return cfg, flag.ErrHelp
		}
		fs.Usage()
		fmt.Fprintln(stderr, "\ngive a workload: produce, consume (replay) or e2e")
		return cfg, errUsage
	}
	cfg.workload = args[0]
	if cfg.workload == "replay" {
		cfg.workload = "consume"
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		return cfg, errUsage
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q: flags follow the workload", fs.Args())
	}
	switch {
	case cfg.workload != "produce" && cfg.workload != "consume" && cfg.workload != "e2e":
		return cfg, fmt.Errorf("workload %q: use produce, consume (replay) or e2e", cfg.workload)
	case cfg.records < 1:
		return cfg, fmt.Errorf("--records %d: use 1 or more", cfg.records)
	case cfg.size < 0:
		return cfg, fmt.Errorf("--size %d: use 0 or more bytes", cfg.size)
	case cfg.partitions < 1:
		return cfg, fmt.Errorf("--partitions %d: use 1 or more", cfg.partitions)
	case cfg.replicas != 1 && cfg.replicas != 3:
		return cfg, fmt.Errorf("--replicas %d: use 1 or 3", cfg.replicas)
	case cfg.rate < 0:
		return cfg, fmt.Errorf("--rate %v: use records per second, or 0 for as fast as possible", cfg.rate)
	case cfg.rate > 0 && cfg.workload == "consume":
		return cfg, fmt.Errorf("--rate applies to the produce and e2e workloads")
	case cfg.workload == "e2e" && cfg.size < 8:
		return cfg, fmt.Errorf("--size %d: e2e records carry their send time in 8 bytes; use 8 or more", cfg.size)
	case cfg.jsSync != "default" && cfg.jsSync != "always":
		return cfg, fmt.Errorf("--jetstream-sync %q: use default or always", cfg.jsSync)
	case cfg.inFlight < 0:
		return cfg, fmt.Errorf("--max-in-flight %d: use 1 or more, or 0 for each client's default", cfg.inFlight)
	case cfg.conn != "tcp" && cfg.conn != "inprocess":
		return cfg, fmt.Errorf("--conn %q: use tcp or inprocess", cfg.conn)
	case cfg.conn == "inprocess" && cfg.replicas > 1:
		return cfg, fmt.Errorf("--conn inprocess applies to one node; a cluster's clients use loopback tcp")
	case cfg.linger < 0:
		return cfg, fmt.Errorf("--linger %v: use 0 or more", cfg.linger)
	case cfg.group && cfg.workload != "consume":
		return cfg, fmt.Errorf("--group applies to the consume workload")
	case cfg.members < 1:
		return cfg, fmt.Errorf("--members %d: use 1 or more", cfg.members)
	case cfg.batches < 1:
		return cfg, fmt.Errorf("--runnel-batches-in-flight %d: use 1 or more", cfg.batches)
	case cfg.runs < 1:
		return cfg, fmt.Errorf("--runs %d: use 1 or more", cfg.runs)
	case cfg.format != "table" && cfg.format != "json":
		return cfg, fmt.Errorf("--format %q: use table or json", cfg.format)
	}
	return cfg, nil
}

// compare runs the workload on runnel and on JetStream, cfg.runs times
// each, one system at a time, alternating which goes first so neither is
// always measured after the other. Each side reports its median run.
func compare(ctx context.Context, cfg config, progress func(string) func(int64, time.Duration)) (*comparison, error) {
	side := func(name string) func(int64, time.Duration) {
		if progress == nil {
			return nil
		}
		return progress(name)
	}
	type system struct {
		name string
		run  func(context.Context, config, func(int64, time.Duration)) (*bench.Result, error)
		res  []*bench.Result
	}
	systems := []*system{{name: "runnel", run: runRunnel}, {name: "jetstream", run: runJetStream}}
	for i := range max(cfg.runs, 1) {
		cfg.run = i + 1
		for k := range systems {
			s := systems[(i+k)%len(systems)]
			res, err := s.run(ctx, cfg, side(s.name))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.name, err)
			}
			s.res = append(s.res, res)
		}
	}
	cmp := newComparison(cfg.workload, median(systems[0].res, cfg.rate > 0), median(systems[1].res, cfg.rate > 0))
	cmp.Runs = max(cfg.runs, 1)
	if cmp.Runs > 1 {
		cmp.AllRuns = map[string][]runSummary{}
		for _, s := range systems {
			for _, r := range s.res {
				cmp.AllRuns[s.name] = append(cmp.AllRuns[s.name], runSummary{RecordsPerSec: r.RecordsPerSec, LatencyMS: r.LatencyMS})
			}
		}
		cmp.SameRun = sameRunRatios(cmp.AllRuns["runnel"], cmp.AllRuns["jetstream"])
	}
	return cmp, nil
}

// median returns the median run: by records/s for a closed loop, by p99
// latency for an open loop (whose rate is the offered one). With an even
// count it is the lower middle one.
func median(runs []*bench.Result, openLoop bool) *bench.Result {
	sorted := slices.Clone(runs)
	slices.SortStableFunc(sorted, func(a, b *bench.Result) int {
		if openLoop {
			return cmp.Compare(a.LatencyMS.P99, b.LatencyMS.P99)
		}
		return cmp.Compare(a.RecordsPerSec, b.RecordsPerSec)
	})
	return sorted[(len(sorted)-1)/2]
}

// measure runs the workload on d, the system called name: produce, or
// produce and then replay. With cfg.profileDir the measured part (the
// replay alone, for consume) runs under the CPU profiler.
func measure(ctx context.Context, cfg config, name string, d bench.Driver, progress func(int64, time.Duration)) (*bench.Result, error) {
	// Start each side with the other's garbage collected.
	runtime.GC()
	p := bench.ProduceConfig{Records: cfg.records, Size: cfg.size, Rate: cfg.rate}
	if cfg.workload == "consume" {
		if _, err := bench.Produce(ctx, d, p); err != nil {
			return nil, err
		}
		runtime.GC()
	}
	if cfg.profileDir != "" {
		stop, err := startProfile(filepath.Join(cfg.profileDir, fmt.Sprintf("%s-%d.pprof", name, max(cfg.run, 1))))
		if err != nil {
			return nil, err
		}
		defer stop()
	}
	switch cfg.workload {
	case "consume":
		cc := bench.ConsumeConfig{Progress: progress}
		if cfg.group {
			cc.Group, cc.Members = "bench-group", cfg.members
		}
		return bench.Consume(ctx, d, cc)
	case "e2e":
		return bench.EndToEnd(ctx, d, bench.E2EConfig{Records: cfg.records, Size: cfg.size, Rate: cfg.rate, Progress: progress})
	}
	p.Progress = progress
	return bench.Produce(ctx, d, p)
}

// startProfile starts the CPU profiler writing to path; stop ends it.
func startProfile(path string) (stop func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func runRunnel(ctx context.Context, cfg config, progress func(int64, time.Duration)) (*bench.Result, error) {
	dir, err := os.MkdirTemp("", "runnel-peers-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	copts := []client.Option{client.Linger(cfg.linger), client.MaxInFlight(cfg.batches)}
	inFlight := "at most 64 MiB buffered (the client's default)"
	if cfg.inFlight > 0 {
		// The client bounds the encoded bytes of records not yet acked,
		// and wants a batch to fit in that bound (and hold 1 KiB).
		per := record.Size(&record.Record{Value: make([]byte, cfg.size)})
		buf := max(cfg.inFlight*per, 1024)
		copts = append(copts, client.MaxBufferedBytes(int64(buf)), client.MaxBatchBytes(min(buf, 1<<20)))
		inFlight = fmt.Sprintf("about %d records awaiting acks at most", cfg.inFlight)
	}
	rn, err := startRunnel(ctx, cfg.replicas, cfg.runnelSync, cfg.conn == "inprocess", dir, copts...)
	if err != nil {
		return nil, err
	}
	defer rn.close()
	const topic = "bench"
	if err := rn.createTopic(ctx, topic, cfg.partitions, cfg.replicas); err != nil {
		return nil, err
	}
	before := rn.fsyncs(ctx)
	res, err := measure(ctx, cfg, "runnel", bench.NewRunnel(rn.c, topic), progress)
	if err != nil {
		return nil, err
	}
	res.Durability = bench.Durability{Acks: "all", Replicas: cfg.replicas, Fsync: cfg.runnelSync, Note: runnelSyncLabel(cfg)}
	if after := rn.fsyncs(ctx); cfg.workload != "consume" && before >= 0 && after >= 0 {
		res.SetFsyncs(after - before)
	}
	if cfg.batches > 1 {
		inFlight += fmt.Sprintf(", %d batches in flight per partition", cfg.batches)
	}
	res.Environment = bench.CurrentEnvironment(fmt.Sprintf("runnel: %s, linger %v, %s", rn.label, cfg.linger, inFlight))
	return res, nil
}

func runJetStream(ctx context.Context, cfg config, progress func(int64, time.Duration)) (*bench.Result, error) {
	dir, err := os.MkdirTemp("", "runnel-peers-jetstream-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	always := cfg.jsSync == "always"
	srv, err := startJetStream(ctx, cfg.replicas, always, dir)
	if err != nil {
		return nil, err
	}
	defer srv.shutdown()
	d, err := newJetStream(ctx, srv, jetStreamOptions{
		Streams: cfg.partitions, Replicas: cfg.replicas, MaxPending: cfg.inFlight, InProcess: cfg.conn == "inprocess",
	})
	if err != nil {
		return nil, err
	}
	defer d.Close()
	res, err := measure(ctx, cfg, "jetstream", d, progress)
	if err != nil {
		return nil, err
	}
	res.Durability = bench.Durability{Acks: "all", Replicas: cfg.replicas, Fsync: always, Note: jetStreamSyncLabel(cfg)}
	target := fmt.Sprintf("JetStream: nats-server %s embedded, %d server(s)", server.VERSION, cfg.replicas)
	if cfg.replicas > 1 {
		target += " clustered in one process, loopback TCP"
	} else if cfg.conn == "inprocess" {
		target += ", in-process connection"
	} else {
		target += ", loopback TCP"
	}
	pending := cfg.inFlight
	if pending == 0 {
		pending = 4000
	}
	res.Environment = bench.CurrentEnvironment(fmt.Sprintf("%s, async publish with at most %d awaiting acks", target, pending))
	return res, nil
}

// runnelSyncLabel says when runnel's acknowledged records were fsynced.
func runnelSyncLabel(cfg config) string {
	label := "no fsync (--runnel-sync=false)"
	if cfg.runnelSync {
		label = "fsync before ack"
		if cfg.replicas > 1 {
			label += " on a majority of replicas"
		}
	}
	return label + workloadLabel(cfg)
}

// workloadLabel qualifies a result's durability note by workload.
func workloadLabel(cfg config) string {
	switch cfg.workload {
	case "consume":
		return "; records produced before the read"
	case "e2e":
		return "; latency until a reader received the record"
	}
	return ""
}

// jetStreamSyncLabel names JetStream's sync setting.
func jetStreamSyncLabel(cfg config) string {
	label := "default (no fsync per write)"
	if cfg.jsSync == "always" {
		label = "sync always (fsync every write)"
	}
	return label + workloadLabel(cfg)
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
