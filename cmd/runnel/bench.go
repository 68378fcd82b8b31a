package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/runnel-dev/runnel/bench"
	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
)

func benchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure throughput and latency",
		Long: `Run a workload and report records/s, MB/s and latency percentiles.

By default the workload runs against an embedded broker in this process,
with its data in a temporary folder. --nodes N starts a local cluster of N
runnel serve processes for the run instead, and --brokers measures an
existing cluster. Durability (acks, replicas, fsync) is always reported.

To run a workload against runnel and NATS JetStream in one run and compare
them, use the bench/peers module of the source tree:
cd bench/peers && go run . produce --records 200000 --size 100`,
	}
	var cpuProfile string
	var stopProfile func() error
	cmd.PersistentFlags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of this process (the client, and the embedded broker if any) to `FILE`; a cluster's nodes serve theirs at /debug/pprof/profile on their HTTP address")
	cmd.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		if cpuProfile == "" {
			return nil
		}
		f, err := os.Create(cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		stopProfile = func() error {
			pprof.StopCPUProfile()
			return f.Close()
		}
		return nil
	}
	cmd.PersistentPostRunE = func(cmd *cobra.Command, args []string) error {
		if stopProfile == nil {
			return nil
		}
		return stopProfile()
	}
	cmd.AddCommand(benchProduceCmd(), benchConsumeCmd(), benchCommitsCmd(), benchE2ECmd())
	cmd.AddCommand(benchCronCmd())
	cmd.AddCommand(benchQueueCmd())
	return cmd
}

// benchTarget is what a workload runs against, and how to count its fsyncs.
type benchTarget struct {
	c        *client.Client
	label    string
	noSync   bool
	external bool
	// metrics are the /metrics URLs of the nodes, for fsync counts.
	metrics  []string
	embedded *broker.Broker
	close    func()
}

type benchFlags struct {
	brokers    string
	nodes      int
	noSync     bool
	format     string
	partitions int
	replicas   int
	acks       string
	linger     time.Duration
	out        string
}

func (f *benchFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.brokers, "brokers", "", "measure the existing cluster at HOST:PORT,... instead of an embedded broker")
	fl.IntVar(&f.nodes, "nodes", 0, "start a local cluster of N runnel serve processes for the run (0: an embedded broker)")
	fl.BoolVar(&f.noSync, "no-sync", false, "run the embedded broker or local cluster without fsync (labelled in the result)")
	fl.StringVar(&f.format, "format", "table", "output format: table or json")
	fl.IntVar(&f.partitions, "partitions", 1, "partitions of the benchmark topic")
	fl.IntVar(&f.replicas, "replicas", 0, "replication factor of the benchmark topic (0: min(3, nodes))")
	fl.StringVar(&f.acks, "acks", "all", "produce acks: none, leader or all")
	fl.DurationVar(&f.linger, "linger", 5*time.Millisecond, "how long the producer waits to fill a batch")
	fl.StringVar(&f.out, "out", "", "also write the result as JSON and its plots (latency percentiles, throughput over time) as SVG into `DIR`")
}

func (f *benchFlags) check(cmd *cobra.Command) error {
	if f.format != "table" && f.format != "json" {
		return fmt.Errorf("--format %q: use table or json", f.format)
	}
	if f.brokers != "" && f.nodes > 0 {
		return fmt.Errorf("use --brokers or --nodes, not both")
	}
	if f.brokers != "" && cmd.Flags().Changed("no-sync") {
		return fmt.Errorf("--no-sync applies to brokers the bench starts; an existing cluster keeps its own setting")
	}
	if f.nodes < 0 || f.nodes > 9 {
		return fmt.Errorf("--nodes %d: use 1 to 9, or 0 for an embedded broker", f.nodes)
	}
	if f.partitions < 1 {
		return fmt.Errorf("--partitions %d: use 1 or more", f.partitions)
	}
	return nil
}

// open starts or connects to the target.
func (f *benchFlags) open(ctx context.Context, stderr io.Writer, opts ...client.Option) (*benchTarget, error) {
	switch {
	case f.brokers != "":
		c, err := client.New(ctx, append([]client.Option{client.Brokers(f.brokers)}, opts...)...)
		if err != nil {
			return nil, err
		}
		t := &benchTarget{c: c, label: f.brokers, external: true, close: func() { c.Close() }}
		if md, err := c.Metadata(ctx); err == nil {
			for _, n := range md.Nodes {
				if n.HTTP != "" {
					t.metrics = append(t.metrics, "http://"+n.HTTP+"/metrics")
				}
			}
		}
		return t, nil
	case f.nodes > 0:
		dir, err := os.MkdirTemp("", "runnel-bench-")
		if err != nil {
			return nil, err
		}
		lc, err := startLocalCluster(ctx, localClusterConfig{Nodes: f.nodes, Dir: dir, NoSync: f.noSync})
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		stop := func() { lc.Stop(); os.RemoveAll(dir) }
		c, err := client.New(ctx, append([]client.Option{client.Brokers(lc.cluster.Brokers)}, opts...)...)
		if err != nil {
			stop()
			return nil, err
		}
		t := &benchTarget{c: c, label: fmt.Sprintf("local cluster of %d processes", f.nodes), noSync: f.noSync,
			close: func() { c.Close(); stop() }}
		for _, h := range lc.https {
			t.metrics = append(t.metrics, "http://"+h+"/metrics")
		}
		return t, nil
	default:
		dir, err := os.MkdirTemp("", "runnel-bench-")
		if err != nil {
			return nil, err
		}
		quiet := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		b, err := broker.Open(dir, broker.Options{NoSync: f.noSync, Logger: quiet})
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		stop := func() { b.Close(); os.RemoveAll(dir) }
		c, err := client.New(ctx, append([]client.Option{client.Dialer(b.DialContext)}, opts...)...)
		if err != nil {
			stop()
			return nil, err
		}
		return &benchTarget{c: c, label: "embedded broker", noSync: f.noSync, embedded: b,
			close: func() { c.Close(); stop() }}, nil
	}
}

// fsyncs returns the fsyncs the target's nodes have counted so far, or -1
// when they cannot be read.
func (t *benchTarget) fsyncs(ctx context.Context) int64 {
	if t.embedded != nil {
		return t.embedded.Stats().Syncs
	}
	if len(t.metrics) == 0 {
		return -1
	}
	total, err := bench.ScrapeFsyncs(ctx, t.metrics)
	if err != nil {
		return -1
	}
	return total
}

func benchProduceCmd() *cobra.Command {
	var (
		f        benchFlags
		records  int
		size     int
		rate     float64
		topic    string
		inFlight int
	)
	cmd := &cobra.Command{
		Use:   "produce",
		Short: "Produce records at the highest rate, or at a fixed rate for latency",
		Long: `Produce --records records of --size bytes to a new topic and report
throughput and the latency from send to acknowledgement.

Without --rate the producer sends as fast as the client takes records
(closed loop). With --rate R the load is open loop: record i is due at
start + i/R and its latency counts from that due time, so a stall shows up
in the latency rather than slowing the sender (no coordinated omission).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(cmd); err != nil {
				return err
			}
			level, err := client.ParseAcks(f.acks)
			if err != nil {
				return fmt.Errorf("--acks %q: use none, leader or all", f.acks)
			}
			if records < 1 {
				return fmt.Errorf("--records %d: use 1 or more", records)
			}
			if size < 0 {
				return fmt.Errorf("--size %d: use 0 or more bytes", size)
			}
			if rate < 0 {
				return fmt.Errorf("--rate %v: use records per second, or 0 for as fast as possible", rate)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			if inFlight < 1 {
				return fmt.Errorf("--in-flight %d: use 1 or more batches per partition", inFlight)
			}
			t, err := f.open(ctx, cmd.ErrOrStderr(), client.Acks(level), client.Linger(f.linger), client.MaxInFlight(inFlight))
			if err != nil {
				return explain(err)
			}
			defer t.close()
			topic, info, err := t.createTopic(ctx, cmd.ErrOrStderr(), &f, "bench-produce", topic)
			if err != nil {
				return err
			}
			replicas := 1
			if len(info.Partitions) > 0 {
				replicas = len(info.Partitions[0].Replicas)
			}
			cfg := bench.ProduceConfig{Records: records, Size: size, Rate: rate}
			var clear func()
			cfg.Progress, clear = progressLine(cmd.ErrOrStderr(), records)
			before := t.fsyncs(ctx)
			res, err := bench.Produce(ctx, bench.NewRunnel(t.c, topic), cfg)
			clear()
			if err != nil {
				return explain(err)
			}
			res.Durability.Acks = level.String()
			res.Durability.Replicas = replicas
			if after := t.fsyncs(ctx); before >= 0 && after >= 0 {
				res.SetFsyncs(after - before)
			}
			res.Durability.Fsync = level == client.AcksAll && !t.noSync
			if t.external {
				// An existing cluster's fsync setting is not visible to a
				// client; the fsync count, when the metrics are reachable,
				// is the evidence.
				res.Durability.Fsync = level == client.AcksAll && res.Durability.Fsyncs > 0
				res.Durability.Note = "existing cluster"
			}
			res.Environment = bench.CurrentEnvironment(t.label)
			return f.report(cmd, res)
		},
	}
	f.add(cmd)
	fl := cmd.Flags()
	fl.IntVar(&records, "records", 200000, "records to produce")
	fl.IntVar(&size, "size", 100, "value size in bytes")
	fl.Float64Var(&rate, "rate", 0, "offered load in records/s, open loop (0: as fast as possible)")
	fl.StringVar(&topic, "topic", "", "topic to create for the run (default bench-produce-<time>)")
	fl.IntVar(&inFlight, "in-flight", 1, "batches sent per partition before the first is acknowledged (the client's MaxInFlight)")
	return cmd
}

func benchConsumeCmd() *cobra.Command {
	var (
		f       benchFlags
		records int
		size    int
		group   bool
		members int
	)
	cmd := &cobra.Command{
		Use:     "consume",
		Aliases: []string{"replay"},
		Short:   "Replay a topic from the start: plain consumers, or a consumer group",
		Long: `Produce --records records of --size bytes into a new topic, then read them all
back from offset 0 and report the read rate. Without --group one consumer
per partition reads; with --group the records are read by --members members
of a new consumer group, which share the partitions.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(cmd); err != nil {
				return err
			}
			if err := refuseFlags(cmd, "acks"); err != nil {
				return err // records are produced with acks=all
			}
			if !group && cmd.Flags().Changed("members") {
				return fmt.Errorf("--members: applies only with --group; leave it out or add --group")
			}
			if records < 1 || size < 0 || members < 1 {
				return fmt.Errorf("--records %d, --size %d, --members %d: use 1 or more records and members, 0 or more bytes", records, size, members)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			t, err := f.open(ctx, cmd.ErrOrStderr(), client.Linger(f.linger))
			if err != nil {
				return explain(err)
			}
			defer t.close()
			topic, info, err := t.createTopic(ctx, cmd.ErrOrStderr(), &f, "bench-consume", "")
			if err != nil {
				return err
			}
			d := bench.NewRunnel(t.c, topic)
			if _, err := bench.Produce(ctx, d, bench.ProduceConfig{Records: records, Size: size}); err != nil {
				return explain(err)
			}
			cfg := bench.ConsumeConfig{}
			if group {
				cfg.Group, cfg.Members = topic, members
			}
			var clear func()
			cfg.Progress, clear = progressLine(cmd.ErrOrStderr(), records)
			res, err := bench.Consume(ctx, d, cfg)
			clear()
			if err != nil {
				return explain(err)
			}
			res.Durability = bench.Durability{Acks: "all", Replicas: len(info.Partitions[0].Replicas), Fsync: !t.noSync, Note: "records produced before the read"}
			res.Environment = bench.CurrentEnvironment(t.label)
			return f.report(cmd, res)
		},
	}
	f.add(cmd)
	fl := cmd.Flags()
	fl.IntVar(&records, "records", 1000000, "records to produce and then read")
	fl.IntVar(&size, "size", 100, "value size in bytes")
	fl.BoolVar(&group, "group", false, "read as a consumer group")
	fl.IntVar(&members, "members", 3, "members of the group (with --group)")
	return cmd
}

func benchCommitsCmd() *cobra.Command {
	var (
		f       benchFlags
		commits int
		workers int
	)
	cmd := &cobra.Command{
		Use:   "commits",
		Short: "Measure committed-offset writes per second",
		Long: `Commit --commits offsets from --workers concurrent committers, each for a
group of its own, and report commits/s and commit latency. A commit is
acknowledged once it is durable (written to the offsets file on one node,
committed by the controller raft group in a cluster).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(cmd); err != nil {
				return err
			}
			if err := refuseFlags(cmd, "acks", "linger"); err != nil {
				return err // commits produce no records
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			t, err := f.open(ctx, cmd.ErrOrStderr())
			if err != nil {
				return explain(err)
			}
			defer t.close()
			topic, info, err := t.createTopic(ctx, cmd.ErrOrStderr(), &f, "bench-commits", "")
			if err != nil {
				return err
			}
			res, err := bench.Commits(ctx, t.c, bench.CommitsConfig{Topic: topic, Workers: workers, Commits: commits})
			if err != nil {
				return explain(err)
			}
			res.Durability = bench.Durability{Acks: "all", Replicas: len(info.Partitions[0].Replicas), Fsync: !t.noSync, Note: "records are offset commits"}
			res.Environment = bench.CurrentEnvironment(t.label)
			return f.report(cmd, res)
		},
	}
	f.add(cmd)
	cmd.Flags().IntVar(&commits, "commits", 50000, "commits to make")
	cmd.Flags().IntVar(&workers, "workers", 64, "concurrent committers")
	return cmd
}

// waitSettled waits until every partition of topic is led by its
// preferred replica, so that the run does not measure the elections and
// leadership moves that follow creating a topic in a cluster.
func waitSettled(ctx context.Context, c *client.Client, topic string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		info, err := c.DescribeTopic(ctx, topic)
		settled := err == nil && len(info.Partitions) > 0
		for _, p := range info.Partitions {
			if len(p.Replicas) == 0 || p.Leader != p.Replicas[0] {
				settled = false
			}
		}
		if settled {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("partitions of %s not led by their preferred replicas within %s", topic, limit)
		case <-tick.C:
		}
	}
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// createTopic creates the run's topic, named after prefix and the time
// unless name is set, with the flags' partitions and replicas, and waits
// for its partitions to have leaders (warning on stderr when they do not
// settle in time, and measuring anyway).
func (t *benchTarget) createTopic(ctx context.Context, stderr io.Writer, f *benchFlags, prefix, name string) (string, client.TopicInfo, error) {
	if name == "" {
		name = fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
	}
	info, err := t.c.CreateTopic(ctx, name, f.partitions, f.replicas, nil)
	if err != nil {
		return "", info, explain(err)
	}
	if err := waitSettled(ctx, t.c, name, 30*time.Second); err != nil {
		fmt.Fprintf(stderr, "runnel bench: %v; measuring anyway\n", err)
	}
	return name, info, nil
}

// refuseFlags fails when one of the common bench flags names was set on a
// workload that does not use it, so that no flag is silently ignored.
func refuseFlags(cmd *cobra.Command, names ...string) error {
	for _, n := range names {
		if cmd.Flags().Changed(n) {
			return fmt.Errorf("--%s: runnel bench %s does not use it; leave it out", n, cmd.Name())
		}
	}
	return nil
}
