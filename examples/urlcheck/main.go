// Command urlcheck checks the URLs of a file, one per line, through runnel:
// a publisher puts each line on topic "ping" with a message id per line,
// checkers in one queue group fetch each URL with a timeout and publish the
// outcome to "ping-results" (failures are retried with backoff, and after
// the last attempt reported as an error and dead-lettered), and a writer in
// its own consumer group appends each line's result to a file, once.
//
//	go run ./examples/urlcheck -input urls.txt -out results.jsonl        # all in one, embedded broker
//	go run ./examples/urlcheck -brokers HOST:PORT -role publish -input urls.txt
//	go run ./examples/urlcheck -brokers HOST:PORT -role check            # as many as you like
//	go run ./examples/urlcheck -brokers HOST:PORT -role write -input urls.txt -out results.jsonl
//
// See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
)

func main() {
	cfg := defaults()
	flag.StringVar(&cfg.role, "role", "all", "all, publish, check or write")
	flag.StringVar(&cfg.input, "input", "", "the URL file, one URL per line (publish, write, all)")
	flag.StringVar(&cfg.out, "out", "ping-results.jsonl", "the results file the writer appends to (write, all)")
	flag.StringVar(&cfg.brokers, "brokers", "", "a running cluster, HOST:PORT,... (default $RUNNEL_BROKERS; -role all without -brokers runs an embedded broker in a temporary folder)")
	flag.StringVar(&cfg.run, "run", "ping", "the run's name: message ids are RUN/LINE, so a file published twice under one name is checked once")
	flag.IntVar(&cfg.checkers, "checkers", 3, "checkers to start (all, check)")
	flag.IntVar(&cfg.concurrency, "concurrency", 8, "URLs each checker fetches at once")
	flag.DurationVar(&cfg.timeout, "timeout", cfg.timeout, "timeout of one fetch")
	flag.IntVar(&cfg.attempts, "attempts", cfg.attempts, "fetches of a URL before its error is the result and it is dead-lettered")
	flag.DurationVar(&cfg.visibility, "visibility", cfg.visibility, "lease of a URL to a checker; a killed checker's URLs go to another after it")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := runRole(ctx, cfg); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "urlcheck:", err)
		os.Exit(1)
	}
}

func defaults() config {
	return config{
		run: "ping", checkers: 3, concurrency: 8, timeout: 5 * time.Second, attempts: 3,
		backoffMin: 200 * time.Millisecond, backoffMax: 5 * time.Second, visibility: 30 * time.Second,
	}
}

// runRole runs cfg.role against cfg.brokers.
func runRole(ctx context.Context, cfg config) error {
	if cfg.role == "all" && cfg.brokers == "" {
		newClient, closeBroker, err := embedded(ctx)
		if err != nil {
			return err
		}
		defer closeBroker()
		return runAll(ctx, newClient, cfg)
	}
	if cfg.brokers == "" && os.Getenv("RUNNEL_BROKERS") != "" {
		cfg.brokers = os.Getenv("RUNNEL_BROKERS")
	}
	newClient := func() (*client.Client, error) {
		return client.New(ctx, client.Brokers(cfg.brokers))
	}
	switch cfg.role {
	case "all":
		return runAll(ctx, newClient, cfg)
	case "publish":
		c, err := newClient()
		if err != nil {
			return err
		}
		defer c.Close()
		if err := ensureTopics(ctx, c); err != nil {
			return err
		}
		n, err := publish(ctx, c, cfg)
		if err == nil {
			fmt.Fprintf(os.Stderr, "urlcheck: published %d lines\n", n)
		}
		return err
	case "check":
		c, err := newClient()
		if err != nil {
			return err
		}
		defer c.Close()
		if err := ensureTopics(ctx, c); err != nil {
			return err
		}
		return checkMany(ctx, c, cfg)
	case "write":
		c, err := newClient()
		if err != nil {
			return err
		}
		defer c.Close()
		if err := ensureTopics(ctx, c); err != nil {
			return err
		}
		want := -1
		if cfg.input != "" {
			lines, err := readLines(cfg.input)
			if err != nil {
				return err
			}
			want = len(lines)
		}
		n, err := write(ctx, c, cfg, want, nil)
		fmt.Fprintf(os.Stderr, "urlcheck: %d results in %s\n", n, cfg.out)
		return err
	}
	return fmt.Errorf("unknown -role %q: want all, publish, check or write", cfg.role)
}

// embedded opens a broker in a temporary folder and returns a way to make
// clients of it and a function that closes it.
func embedded(ctx context.Context) (func() (*client.Client, error), func(), error) {
	dir, err := os.MkdirTemp("", "urlcheck-")
	if err != nil {
		return nil, nil, err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
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
