// Command kafka-cron runs the kafka-cron exercise on runnel in one process:
// a cron publishing the jobs of jobs.yaml, and for each topic ("cluster")
// in it a queue group of workers running the jobs' commands, with retries,
// dead letters and a results topic. It prints every run's outcome and
// every dead letter as they happen.
//
//	go run ./examples/kafka-cron                       # an embedded broker
//	go run ./examples/kafka-cron -brokers 127.0.0.1:7070,127.0.0.1:7071,127.0.0.1:7072
//
// With -http it serves the cron's and workers' metrics on /metrics for the
// Prometheus config beside it. See README.md for the same with the runnel
// command line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/client/cron"
	"github.com/runnel-dev/runnel/client/job"
	"github.com/runnel-dev/runnel/client/worker"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.jobsFile, "jobs", "examples/kafka-cron/jobs.yaml", "the job file")
	flag.StringVar(&cfg.brokers, "brokers", "", "a running cluster, HOST:PORT,... (default: an embedded broker in a temporary folder)")
	flag.StringVar(&cfg.httpAddr, "http", "", "serve /metrics on this address, as 127.0.0.1:9100")
	flag.IntVar(&cfg.workers, "workers", 2, "workers per cluster")
	flag.DurationVar(&cfg.duration, "duration", 0, "stop after this long (default: at SIGINT or SIGTERM)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if cfg.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.duration)
		defer cancel()
	}
	cfg.out = os.Stdout
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "kafka-cron:", err)
		os.Exit(1)
	}
}

type config struct {
	jobsFile string
	brokers  string
	httpAddr string
	workers  int
	duration time.Duration
	out      io.Writer
	// jobs replace the job file when set (tests).
	jobs []cron.Job
	// backoff replaces the workers' default backoff when set (tests).
	backoff worker.Backoff
	// events, when set, gets every result and dead letter (tests).
	events func(event)
}

// event is a run's result or a dead letter, as read from their topics.
type event struct {
	cluster string
	result  *job.Result
	dead    *job.DeadLetter
}

// run runs the cron, the workers and the reporter until ctx ends.
func run(ctx context.Context, cfg config) error {
	jobs := cfg.jobs
	if jobs == nil {
		var err error
		if jobs, err = cron.Load(cfg.jobsFile); err != nil {
			return err
		}
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	newClient, closeBroker, err := connect(ctx, cfg.brokers, logger)
	if err != nil {
		return err
	}
	defer closeBroker()
	c, err := newClient()
	if err != nil {
		return err
	}
	defer c.Close()

	reg := prometheus.NewRegistry()
	if cfg.httpAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		srv := &http.Server{Addr: cfg.httpAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go srv.ListenAndServe()
		defer srv.Close()
	}

	// The clusters are the jobs' topics; their workers write results to
	// <topic>.results and dead letters to <topic>.dlq.
	var clusters []string
	for _, j := range jobs {
		if !slices.Contains(clusters, j.Topic) {
			clusters = append(clusters, j.Topic)
		}
	}
	cr, err := cron.New(c, jobs, cron.Options{Registerer: reg, Logger: logger})
	if err != nil {
		return err
	}
	for _, cl := range clusters {
		for _, t := range []string{cl, cl + ".results", cl + ".dlq"} {
			if _, err := c.EnsureTopic(ctx, t, 1, 0); err != nil {
				return fmt.Errorf("topic %s: %w", t, err)
			}
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 1+len(clusters)*cfg.workers)
	wg.Go(func() { errs <- cr.Run(ctx) })
	for _, cl := range clusters {
		for range cfg.workers {
			q, err := c.Queue(cl+"-workers", cl, client.QueueOptions{Prefetch: 4})
			if err != nil {
				return fmt.Errorf("queue group on %s: %w", cl, err)
			}
			w, err := worker.New(q, worker.Exec(worker.ExecOptions{}), worker.Options{
				Concurrency: 4, Backoff: cfg.backoff, Results: c, ResultsTopic: cl + ".results",
				DrainTimeout: 5 * time.Second, Registerer: reg, Logger: logger,
			})
			if err != nil {
				q.Close()
				return err
			}
			wg.Go(func() {
				errs <- w.Run(ctx)
				q.Close()
			})
		}
		wg.Go(func() { report(ctx, c, cl, cfg) })
	}
	fmt.Fprintf(cfg.out, "kafka-cron: %d jobs on %s; Ctrl-C stops\n", len(jobs), strings.Join(clusters, ", "))
	var first error
	select {
	case <-ctx.Done():
	case first = <-errs:
		cancel()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if first == nil && err != nil && !errors.Is(err, context.Canceled) {
			first = err
		}
	}
	return first
}

// connect returns a way to make clients of the cluster at brokers, or of a
// broker it opens in a temporary folder, and a function that closes it.
func connect(ctx context.Context, brokers string, logger *slog.Logger) (func() (*client.Client, error), func(), error) {
	if brokers != "" {
		return func() (*client.Client, error) { return client.New(ctx, client.Brokers(brokers)) }, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "kafka-cron-")
	if err != nil {
		return nil, nil, err
	}
	b, err := broker.Open(dir, broker.Options{Logger: logger})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	newClient := func() (*client.Client, error) {
		return client.New(ctx, client.Brokers(b.Addr()), client.Dialer(b.DialContext))
	}
	return newClient, func() { b.Close(); os.RemoveAll(dir) }, nil
}

// report prints the results and dead letters of cluster as they come.
func report(ctx context.Context, c *client.Client, cluster string, cfg config) {
	var wg sync.WaitGroup
	wg.Go(func() {
		follow(ctx, c, cluster+".results", func(r *client.Record) {
			res, err := job.DecodeResult(r.Value)
			if err != nil {
				return
			}
			exit := ""
			if res.ExitCode != nil {
				exit = fmt.Sprintf(" exit %d", *res.ExitCode)
			}
			fmt.Fprintf(cfg.out, "%-15s %-45s attempt %d  %-7s%s  %dms\n", cluster, res.ID, res.Attempt, res.Outcome, exit, res.DurationMS)
			if cfg.events != nil {
				cfg.events(event{cluster: cluster, result: &res})
			}
		})
	})
	wg.Go(func() {
		follow(ctx, c, cluster+".dlq", func(r *client.Record) {
			dl, err := job.DecodeDeadLetter(r.Value)
			if err != nil {
				return
			}
			fmt.Fprintf(cfg.out, "%-15s %-45s DEAD LETTER after %d attempts: %s\n", cluster, dl.Job.ID, dl.Attempts, dl.Reason)
			if cfg.events != nil {
				cfg.events(event{cluster: cluster, dead: &dl})
			}
		})
	})
	wg.Wait()
}

// follow calls fn with every record of every partition of topic, from the
// start, until ctx ends, reading again after an error.
func follow(ctx context.Context, c *client.Client, topic string, fn func(*client.Record)) {
	var info client.TopicInfo
	for {
		var err error
		if info, err = c.DescribeTopic(ctx, topic); err == nil {
			break
		}
		if !pause(ctx) {
			return
		}
	}
	var wg sync.WaitGroup
	for _, p := range info.Partitions {
		wg.Go(func() {
			next := int64(0)
			for ctx.Err() == nil {
				for r, err := range c.Consume(ctx, topic, p.Partition, client.Offset(next)) {
					if err != nil {
						break
					}
					next = r.Offset + 1
					fn(r)
				}
				pause(ctx)
			}
		})
	}
	wg.Wait()
}

// pause waits a moment, and reports whether ctx is still going.
func pause(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(200 * time.Millisecond):
		return true
	}
}
