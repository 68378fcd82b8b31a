package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/client/cron"
	"github.com/runnel-dev/runnel/client/job"
)

// cronLagResult is what `runnel bench cron` reports.
type cronLagResult struct {
	Target    string   `json:"target"`
	Jobs      int      `json:"jobs"`
	Schedule  string   `json:"schedule"`
	Producers int      `json:"producers"`
	Seconds   float64  `json:"duration_s"`
	Fires     int      `json:"fires"`
	Missing   int      `json:"missing"`
	Dups      int      `json:"duplicates"`
	Publish   lagStats `json:"publish_lag_ms"`
	Deliver   lagStats `json:"delivered_lag_ms"`
}

type lagStats struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func newLagStats(d []time.Duration) lagStats {
	if len(d) == 0 {
		return lagStats{}
	}
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return float64(x.Microseconds()) / 1000 }
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
	return lagStats{P50: ms(at(.50)), P99: ms(at(.99)), Max: ms(d[len(d)-1])}
}

func benchCronCmd() *cobra.Command {
	var (
		f         benchFlags
		jobs      int
		schedule  string
		duration  time.Duration
		producers int
	)
	cmd := &cobra.Command{
		Use:   "cron",
		Short: "Measure how close to their scheduled time cron fires are published and read",
		Long: `Run runnel cron with --jobs jobs on --schedule for --duration against a new
topic, read the topic as the fires arrive, and report per fire the lag from
its scheduled time to its publish starting (the scheduler's precision) and
to a consumer reading it (publish, replication and fetch added). Fires of
the first second after the first fire, while the cron starts, are not
counted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(cmd); err != nil {
				return err
			}
			if jobs < 1 {
				return fmt.Errorf("--jobs %d: use 1 or more", jobs)
			}
			if duration < 2*time.Second {
				return fmt.Errorf("--duration %v: use 2s or more", duration)
			}
			if producers < 1 {
				return fmt.Errorf("--producers %d: use 1 or more", producers)
			}
			if err := refuseFlags(cmd, "out", "acks", "linger"); err != nil {
				return err
			}
			if _, err := cron.ParseSchedule(schedule); err != nil {
				return fmt.Errorf("--schedule: %v", err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			t, err := f.open(ctx, cmd.ErrOrStderr(), client.Acks(client.AcksAll))
			if err != nil {
				return explain(err)
			}
			defer t.close()
			topic, _, err := t.createTopic(ctx, cmd.ErrOrStderr(), &f, "bench-cron", "")
			if err != nil {
				return err
			}
			var js []cron.Job
			for i := range jobs {
				j := cron.Job{Name: fmt.Sprintf("bench-%d", i), Schedule: schedule, Topic: topic, Command: "true"}
				if err := j.Check(); err != nil {
					return err
				}
				js = append(js, j)
			}
			extra, err := extraClients(ctx, t, producers-1)
			if err != nil {
				return explain(err)
			}
			res, err := runCronLag(ctx, t.c, extra, js, f.partitions, duration)
			if err != nil {
				return explain(err)
			}
			res.Target, res.Schedule, res.Producers = t.label, schedule, producers
			if f.format == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "cron fire lag: %d jobs %q for %v on %s (acks all, %d partitions, %d producers)\n",
				res.Jobs, res.Schedule, duration, res.Target, f.partitions, res.Producers)
			fmt.Fprintf(out, "fires %d, missing %d, duplicates %d\n", res.Fires, res.Missing, res.Dups)
			fmt.Fprintf(out, "%-38s p50 %8.2f ms  p99 %8.2f ms  max %8.2f ms\n", "scheduled -> publish start:", res.Publish.P50, res.Publish.P99, res.Publish.Max)
			fmt.Fprintf(out, "%-38s p50 %8.2f ms  p99 %8.2f ms  max %8.2f ms\n", "scheduled -> read by a consumer:", res.Deliver.P50, res.Deliver.P99, res.Deliver.Max)
			return nil
		},
	}
	f.add(cmd)
	fl := cmd.Flags()
	fl.IntVar(&jobs, "jobs", 10, "jobs on the schedule")
	fl.StringVar(&schedule, "schedule", "@every 1s", "the jobs' schedule")
	fl.DurationVar(&duration, "duration", 20*time.Second, "how long to run the cron")
	fl.IntVar(&producers, "producers", 4, "clients the cron publishes through (as runnel cron --producers)")
	return cmd
}

// extraClients connects n more clients to the target.
func extraClients(ctx context.Context, t *benchTarget, n int) ([]*client.Client, error) {
	if n == 0 {
		return nil, nil
	}
	var opts []client.Option
	if t.embedded != nil {
		opts = []client.Option{client.Brokers(t.embedded.Addr()), client.Dialer(t.embedded.DialContext)}
	} else {
		md, err := t.c.Metadata(ctx)
		if err != nil {
			return nil, err
		}
		var addrs []string
		for _, n := range md.Nodes {
			addrs = append(addrs, n.Addr)
		}
		opts = []client.Option{client.Brokers(addrs...)}
	}
	var out []*client.Client
	for range n {
		c, err := client.New(ctx, append(opts, client.Acks(client.AcksAll))...)
		if err != nil {
			for _, c := range out {
				c.Close()
			}
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// runCronLag runs a cron with jobs for d and reads its topic meanwhile.
func runCronLag(ctx context.Context, c *client.Client, extra []*client.Client, jobs []cron.Job, partitions int, d time.Duration) (cronLagResult, error) {
	defer func() {
		for _, c := range extra {
			c.Close()
		}
	}()
	topic := jobs[0].Topic
	var (
		mu      sync.Mutex
		publish []time.Duration
		deliver []time.Duration
		seen    = map[string]int{}
	)
	// Fires count from a second after the first one read: the cron's start
	// (creating, reading back its topic) delays the first.
	var counted time.Time
	readCtx, stopRead := context.WithCancel(ctx)
	defer stopRead()
	var wg sync.WaitGroup
	for p := range int32(partitions) {
		wg.Go(func() {
			for r, err := range c.Consume(readCtx, topic, p, client.Start()) {
				now := time.Now()
				if err != nil {
					return
				}
				j, err := job.Decode(r.Value)
				if err != nil {
					continue
				}
				mu.Lock()
				if counted.IsZero() {
					counted = j.ScheduledAt.Truncate(time.Second).Add(time.Second)
				}
				if j.ScheduledAt.Before(counted) {
					mu.Unlock()
					continue
				}
				seen[j.ID]++
				if seen[j.ID] == 1 {
					publish = append(publish, j.PublishedAt.Sub(j.ScheduledAt))
					deliver = append(deliver, now.Sub(j.ScheduledAt))
				}
				mu.Unlock()
			}
		})
	}
	cr, err := cron.New(c, jobs, cron.Options{Partitions: partitions, ExtraClients: extra})
	if err != nil {
		return cronLagResult{}, err
	}
	runCtx, stopCron := context.WithTimeout(ctx, d)
	defer stopCron()
	if err := cr.Run(runCtx); err != nil {
		return cronLagResult{}, err
	}
	end := time.Now()

	// The fires due while the cron ran, but for the last second: a fire
	// late on a busy machine may have been due when the cron stopped.
	var want []string
	mu.Lock()
	from := counted
	mu.Unlock()
	if from.IsZero() {
		return cronLagResult{}, fmt.Errorf("no fire was read in %v: give a --duration of a few times the schedule's interval", d)
	}
	for i := range jobs {
		for t := jobs[i].Next(from.Add(-time.Nanosecond)); !t.IsZero() && t.Before(end.Add(-time.Second)); t = jobs[i].Next(t) {
			want = append(want, job.FireID(jobs[i].Name, t))
		}
	}
	missing := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, id := range want {
			if seen[id] == 0 {
				n++
			}
		}
		return n
	}
	// Wait until the consumers have read every fire, or 5s.
	deadline := time.Now().Add(5 * time.Second)
	for missing() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	stopRead()
	wg.Wait()

	res := cronLagResult{Jobs: len(jobs), Seconds: d.Seconds(), Fires: len(seen), Missing: missing()}
	for _, n := range seen {
		res.Dups += n - 1
	}
	res.Publish = newLagStats(publish)
	res.Deliver = newLagStats(deliver)
	return res, nil
}
