package pipeline_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/client/pipeline"
)

// Example runs a splitter over an embedded broker: sign-ups go to "eu" or
// to "rest" by their key, each to exactly one.
func Example() {
	dir, _ := os.MkdirTemp("", "pipeline-example-")
	defer os.RemoveAll(dir)
	b, err := broker.Open(dir, broker.Options{NoSync: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := client.New(ctx, client.Brokers(b.Addr()), client.Dialer(b.DialContext))
	if err != nil {
		panic(err)
	}
	defer c.Close()
	for _, t := range []string{"signups", "eu", "rest"} {
		if _, err := c.CreateTopic(ctx, t, 1, 0, nil); err != nil {
			panic(err)
		}
	}
	err = c.ProduceSync(ctx,
		&client.Record{Topic: "signups", Key: []byte("eu"), Value: []byte("ana")},
		&client.Record{Topic: "signups", Key: []byte("us"), Value: []byte("bob")},
		&client.Record{Topic: "signups", Key: []byte("eu"), Value: []byte("cleo")},
	)
	if err != nil {
		panic(err)
	}

	split := pipeline.Split(
		pipeline.Route{To: "eu", Match: func(r *client.Record) bool { return string(r.Key) == "eu" }},
		pipeline.Route{To: "rest"}, // everything else
	)
	// Stop the stage once it has routed the three records; Run commits
	// their offsets, their outputs acked, before it returns.
	var n int
	stage := func(ctx context.Context, in *client.Record) ([]*client.Record, error) {
		if n++; n == 3 {
			defer cancel()
		}
		return split(ctx, in)
	}
	if err := pipeline.Run(ctx, c, "router", []string{"signups"}, stage); err != nil {
		panic(err)
	}

	for _, t := range []string{"eu", "rest"} {
		offs, _ := c.ListOffsets(context.Background(), t, 0, client.End())
		var names []string
		for r, err := range c.Consume(context.Background(), t, 0, client.Start()) {
			if err != nil {
				panic(err)
			}
			names = append(names, string(r.Value))
			if r.Offset == offs.End-1 {
				break
			}
		}
		fmt.Printf("%s: %s\n", t, strings.Join(names, " "))
	}
	// Output:
	// eu: ana cleo
	// rest: bob
}
