package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/runnel-dev/runnel/bench"
	"github.com/runnel-dev/runnel/client"
)

func benchQueueCmd() *cobra.Command {
	var (
		f           benchFlags
		jobs, size  int
		consumers   int
		concurrency int
		prefetch    int
	)
	cmd := &cobra.Command{
		Use:   "queue",
		Short: "Measure acked jobs per second through a queue group",
		Long: `Produce --jobs records to a new topic (not measured), then lease and ack
them all through one queue group: --consumers queue consumers, each with
--concurrency handlers that do nothing but ack. Reports acked jobs/s and
the latency of an ack, which is durable once it returns (committed by the
partition's raft group in a cluster, fsynced on one node).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(cmd); err != nil {
				return err
			}
			if err := refuseFlags(cmd, "acks"); err != nil {
				return err // jobs are produced with acks=all
			}
			if jobs < 1 || consumers < 1 || concurrency < 1 || size < 0 || prefetch < 0 {
				return fmt.Errorf("--jobs %d, --consumers %d, --concurrency %d: use 1 or more; --size and --prefetch 0 or more", jobs, consumers, concurrency)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			t, err := f.open(ctx, cmd.ErrOrStderr(), client.Acks(client.AcksAll), client.Linger(f.linger))
			if err != nil {
				return explain(err)
			}
			defer t.close()
			topic, info, err := t.createTopic(ctx, cmd.ErrOrStderr(), &f, "bench-queue", "")
			if err != nil {
				return err
			}
			cfg := bench.QueueConfig{Topic: topic, Jobs: jobs, Size: size, Consumers: consumers, Concurrency: concurrency, Prefetch: prefetch}
			var clear func()
			cfg.Progress, clear = progressLine(cmd.ErrOrStderr(), jobs)
			res, err := bench.Queue(ctx, t.c, cfg)
			clear()
			if err != nil {
				return explain(err)
			}
			res.Durability = bench.Durability{Acks: "all", Replicas: len(info.Partitions[0].Replicas), Fsync: !t.noSync,
				Note: "records are acked jobs; latency is an ack's"}
			if t.external {
				res.Durability.Note += "; existing cluster"
			}
			res.Environment = bench.CurrentEnvironment(t.label)
			return f.report(cmd, res)
		},
	}
	f.add(cmd)
	fl := cmd.Flags()
	fl.IntVar(&jobs, "jobs", 200000, "jobs to produce, then lease and ack")
	fl.IntVar(&size, "size", 100, "job value size in bytes")
	fl.IntVar(&consumers, "consumers", 4, "queue consumers of the group")
	fl.IntVar(&concurrency, "concurrency", 256, "handlers per consumer")
	fl.IntVar(&prefetch, "prefetch", 1024, "records each consumer leases ahead")
	return cmd
}
