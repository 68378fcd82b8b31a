package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/client/worker"
)

func workerCmd() *cobra.Command {
	var (
		cf           clientFlags
		topic, group string
		execute      bool
		concurrency  int
		results      string
		httpAddr     string
		maxAttempts  int
		timeout      time.Duration
		visibility   time.Duration
		drainTimeout time.Duration
		killGrace    time.Duration
		dlq          string
		prefetch     int
		logLevel     string
	)
	cmd := &cobra.Command{
		Use:   "worker --topic T --group G [--exec]",
		Short: "Run jobs from a topic as a member of a queue group",
		Long: `Run jobs from TOPIC as a member of queue group GROUP: each job is leased to
one worker of the group at a time, retried with exponential backoff and
jitter when it fails, and sent to the dead-letter topic (TOPIC.dlq unless
--dlq) with the reason after its last attempt.

With --exec each job's command runs with sh -c in a process group of its
own, with RUNNEL_JOB_ID, RUNNEL_JOB_NAME, RUNNEL_SCHEDULED_AT (RFC 3339) and
RUNNEL_ATTEMPT in its environment; exit 0 is success, any other exit a
failure. At the job's timeout (timeout_ms, else --timeout) the whole group
gets SIGTERM, and SIGKILL after --kill-grace. Without --exec each job's
record value is printed to stdout, one per line, and acked.

A job's max_attempts and timeout_ms come from the job; --max-attempts and
--timeout are the defaults for jobs that leave them 0. With --results every
run's outcome (success, retry, failed, dead), exit code, duration and the
end of its output go to that topic as JSON. With --http, /metrics serves
runnel_job_runtime_seconds, runnel_job_dequeue_age_seconds, runnel_jobs_total
and runnel_jobs_in_flight, and /livez answers ok.

SIGTERM or SIGINT stops leasing, lets running jobs finish for up to
--drain-timeout, then stops the rest and hands them back to the queue.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if topic == "" || group == "" {
				return errors.New("give the queue with --topic TOPIC and --group GROUP")
			}
			logger, err := newLogger(cmd.ErrOrStderr(), logLevel)
			if err != nil {
				return err
			}
			if concurrency < 1 {
				return fmt.Errorf("--concurrency %d: run at least 1 job at a time", concurrency)
			}
			if prefetch < 0 {
				return fmt.Errorf("--prefetch %d: give 0 for the default or a positive number", prefetch)
			}
			if maxAttempts < 1 {
				return fmt.Errorf("--max-attempts %d: allow at least 1 attempt", maxAttempts)
			}
			for name, d := range map[string]time.Duration{"timeout": timeout, "visibility": visibility, "drain-timeout": drainTimeout, "kill-grace": killGrace} {
				if d <= 0 {
					return fmt.Errorf("--%s %v: give a positive duration, such as 30s", name, d)
				}
			}

			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			c, err := cf.newClient(ctx, client.Logger(logger))
			if err != nil {
				return explain(err)
			}
			defer c.Close()

			reg := newRegistry()
			if httpAddr != "" {
				srv, err := serveMetricsHTTP(httpAddr, reg, logger)
				if err != nil {
					return err
				}
				defer srv.Close()
			}

			if prefetch == 0 {
				// A record leased ahead for each job running, ready when
				// it ends.
				prefetch = concurrency
			}
			q, err := c.Queue(group, topic, client.QueueOptions{
				Visibility:      visibility,
				DeadLetterTopic: dlq,
				Prefetch:        prefetch,
			})
			if err != nil {
				return explain(fmt.Errorf("join queue group %s on %s: %w", group, topic, err))
			}
			h := worker.Exec(worker.ExecOptions{KillGrace: killGrace})
			if !execute {
				h = printJobs(cmd.OutOrStdout())
			}
			opts := worker.Options{
				Concurrency:  concurrency,
				MaxAttempts:  maxAttempts,
				Timeout:      timeout,
				DrainTimeout: drainTimeout,
				Registerer:   reg,
				Logger:       logger,
			}
			if results != "" {
				// Run creates the topic before the first job, so a bad
				// name or a cluster that refuses it fails the start.
				opts.Results, opts.ResultsTopic = c, results
			}
			w, err := worker.New(q, h, opts)
			if err != nil {
				q.Close()
				return err
			}
			logger.Info("worker started", "topic", topic, "group", group, "exec", execute, "concurrency", concurrency)
			runErr := w.Run(ctx)
			logger.Info("worker stopped")
			closeErr := q.Close()
			if runErr != nil {
				return explain(runErr)
			}
			if closeErr != nil {
				return explain(fmt.Errorf("leave queue group %s: %w", group, closeErr))
			}
			return nil
		},
	}
	f := cmd.Flags()
	cf.addBrokersFlag(cmd)
	f.StringVar(&topic, "topic", "", "topic the jobs are in (required)")
	f.StringVar(&group, "group", "", "queue group the workers of this topic share (required)")
	f.BoolVar(&execute, "exec", false, "run each job's command with sh -c (without it: print each job and ack it)")
	f.IntVar(&concurrency, "concurrency", runtime.NumCPU(), "jobs run at once")
	f.StringVar(&results, "results", "", "topic that gets each run's result as JSON (off when empty)")
	f.StringVar(&httpAddr, "http", "", "HTTP listen address for /metrics and /livez (off when empty)")
	f.IntVar(&maxAttempts, "max-attempts", worker.DefaultMaxAttempts, "attempts of a job whose max_attempts is 0")
	f.DurationVar(&timeout, "timeout", worker.DefaultTimeout, "timeout of a run of a job whose timeout_ms is 0")
	f.DurationVar(&visibility, "visibility", worker.DefaultVisibility, "lease per delivery; a job running longer extends it")
	f.DurationVar(&drainTimeout, "drain-timeout", worker.DefaultDrainTimeout, "how long SIGTERM lets running jobs finish before stopping them")
	f.DurationVar(&killGrace, "kill-grace", worker.DefaultKillGrace, "time between SIGTERM and SIGKILL for a command stopped early")
	f.StringVar(&dlq, "dlq", "", "dead-letter topic (default TOPIC.dlq)")
	f.IntVar(&prefetch, "prefetch", 0, "records leased ahead of Next (0: --concurrency); more helps many short jobs, "+
		"but each one waits leased, its visibility running, until a job slot is free")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug (a line per job), info, warn, error")
	return cmd
}

// printJobs returns a handler that writes each job's record value to w,
// one per line.
func printJobs(w io.Writer) worker.Handler {
	var mu sync.Mutex
	return func(ctx context.Context, j *worker.Job) error {
		mu.Lock()
		defer mu.Unlock()
		line := append(append([]byte(nil), j.Delivery.Value...), '\n')
		if _, err := w.Write(line); err != nil {
			return worker.Permanent(fmt.Errorf("write stdout: %w", err))
		}
		return nil
	}
}
