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

func benchE2ECmd() *cobra.Command {
	var (
		f       benchFlags
		records int
		size    int
		rate    float64
		warmup  int
	)
	cmd := &cobra.Command{
		Use:   "e2e",
		Short: "End-to-end latency: from a record's send time until a consumer has it",
		Long: `Produce --records records of --size bytes into a new topic while one
consumer per partition reads them, and report the rate at which the
consumers received them and the latency from each record's send time to
its receipt.

With --rate R the load is open loop: record i is due at start + i/R and
its latency counts from that due time, so a stall anywhere between
producer and consumer shows in the latency (no coordinated omission).
Without --rate the producer sends as fast as the client takes records.
Each record carries its due time in its first 8 bytes, so --size is 8 or
more. --warmup records go through first, unmeasured, so that the
consumers are reading when the measurement starts.`,
		Example: `  runnel bench e2e --rate 20000 --records 200000
  runnel bench e2e --nodes 3 --partitions 6 --rate 50000 --records 500000 --out e2e-results`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(cmd); err != nil {
				return err
			}
			level, err := client.ParseAcks(f.acks)
			if err != nil {
				return fmt.Errorf("--acks %q: use none, leader or all", f.acks)
			}
			switch {
			case records < 1:
				return fmt.Errorf("--records %d: use 1 or more", records)
			case size < 8:
				return fmt.Errorf("--size %d: use 8 or more bytes (a record carries its send time)", size)
			case rate < 0:
				return fmt.Errorf("--rate %v: use records per second, or 0 for as fast as possible", rate)
			case warmup < 0:
				return fmt.Errorf("--warmup %d: use 0 or more records", warmup)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			t, err := f.open(ctx, cmd.ErrOrStderr(), client.Acks(level), client.Linger(f.linger))
			if err != nil {
				return explain(err)
			}
			defer t.close()
			topic, info, err := t.createTopic(ctx, cmd.ErrOrStderr(), &f, "bench-e2e", "")
			if err != nil {
				return err
			}
			cfg := bench.E2EConfig{Records: records, Size: size, Rate: rate, Warmup: warmup}
			if warmup == 0 {
				cfg.Warmup = -1
			}
			var clear func()
			cfg.Progress, clear = progressLine(cmd.ErrOrStderr(), records)
			before := t.fsyncs(ctx)
			res, err := bench.EndToEnd(ctx, bench.NewRunnel(t.c, topic), cfg)
			clear()
			if err != nil {
				return explain(err)
			}
			res.Durability.Acks = level.String()
			res.Durability.Replicas = len(info.Partitions[0].Replicas)
			if after := t.fsyncs(ctx); before >= 0 && after >= 0 {
				// The warm-up's records count too: they were written in
				// the same run.
				res.SetFsyncs(after - before)
			}
			res.Durability.Fsync = level == client.AcksAll && !t.noSync
			res.Durability.Note = "latency until a consumer received the record"
			if t.external {
				res.Durability.Fsync = level == client.AcksAll && res.Durability.Fsyncs > 0
				res.Durability.Note += "; existing cluster"
			}
			res.Environment = bench.CurrentEnvironment(t.label)
			return f.report(cmd, res)
		},
	}
	f.add(cmd)
	fl := cmd.Flags()
	fl.IntVar(&records, "records", 200000, "records to measure")
	fl.IntVar(&size, "size", 100, "value size in bytes (8 or more)")
	fl.Float64Var(&rate, "rate", 0, "offered load in records/s, open loop (0: as fast as possible)")
	fl.IntVar(&warmup, "warmup", 1000, "records sent and read before the measured ones (0: none)")
	return cmd
}
