// Command wordcount counts the whitespace-separated words of a text file
// with map/reduce over runnel topics: the lines go into a topic with S
// partitions, mappers (a pipeline stage in one consumer group) emit
// per-word counts keyed by word into a topic with R partitions, and one
// reducer per count partition sums them, waits for the end-of-input
// marker of every line partition, and emits its totals. It prints one
// "word<TAB>count" line per distinct word, sorted by word.
//
//	go run ./examples/wordcount -input FILE                  # an embedded broker
//	go run ./examples/wordcount -input FILE -brokers 127.0.0.1:7070
//
// See README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.input, "input", "", "the text file to count (required)")
	flag.StringVar(&cfg.brokers, "brokers", "", "a running cluster, HOST:PORT,... (default: an embedded broker in a temporary folder)")
	flag.IntVar(&cfg.splits, "splits", 4, "S: partitions of the lines topic")
	flag.IntVar(&cfg.reducers, "reducers", 3, "R: partitions of the counts topic, one reducer each")
	flag.IntVar(&cfg.mappers, "mappers", 2, "mappers in the map stage's consumer group")
	flag.Parse()
	if cfg.input == "" {
		fmt.Fprintln(os.Stderr, "wordcount: -input FILE is required")
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg.out = os.Stdout
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "wordcount:", err)
		os.Exit(1)
	}
}

// connect returns a way to make clients of the cluster at brokers, or of a
// broker it opens in a temporary folder, and a function that closes it.
func connect(ctx context.Context, brokers string) (func(...client.Option) (*client.Client, error), func(), error) {
	if brokers != "" {
		return func(opts ...client.Option) (*client.Client, error) {
			return client.New(ctx, append([]client.Option{client.Brokers(brokers)}, opts...)...)
		}, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "wordcount-")
	if err != nil {
		return nil, nil, err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	b, err := broker.Open(dir, broker.Options{Logger: logger, NoSync: true})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	newClient := func(opts ...client.Option) (*client.Client, error) {
		return client.New(ctx, append([]client.Option{client.Brokers(b.Addr()), client.Dialer(b.DialContext)}, opts...)...)
	}
	return newClient, func() { b.Close(); os.RemoveAll(dir) }, nil
}
