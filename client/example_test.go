package client_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"sync/atomic"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
)

// Example produces to and consumes from a broker embedded in the program,
// in process. Over a socket, only the options differ:
// client.New(ctx, client.Brokers("127.0.0.1:7070")).
func Example() {
	dir, _ := os.MkdirTemp("", "runnel-example")
	defer os.RemoveAll(dir)
	b, err := broker.Open(dir, broker.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	ctx := context.Background()
	c, err := client.New(ctx, client.Brokers(b.Addr()), client.Dialer(b.DialContext))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	if _, err := c.CreateTopic(ctx, "greetings", 1, 1, nil); err != nil {
		log.Fatal(err)
	}
	hello := &client.Record{Topic: "greetings", Key: []byte("en"), Value: []byte("hello")}
	hallo := &client.Record{Topic: "greetings", Key: []byte("de"), Value: []byte("hallo")}
	if err := c.ProduceSync(ctx, hello, hallo); err != nil {
		log.Fatal(err)
	}
	fmt.Println("hallo is at offset", hallo.Offset)

	n := 0
	for r, err := range c.Consume(ctx, "greetings", 0, client.Start()) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%d %s=%s\n", r.Offset, r.Key, r.Value)
		if n++; n == 2 {
			break
		}
	}
	// Output:
	// hallo is at offset 1
	// 0 en=hello
	// 1 de=hallo
}

// ExampleClient_Produce produces asynchronously: the promise runs once the
// broker has acked the record, and Flush waits for all of them.
func ExampleClient_Produce() {
	dir, _ := os.MkdirTemp("", "runnel-example")
	defer os.RemoveAll(dir)
	b, err := broker.Open(dir, broker.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	c, err := client.New(ctx, client.Brokers(b.Addr()), client.Dialer(b.DialContext))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.CreateTopic(ctx, "events", 1, 1, nil); err != nil {
		log.Fatal(err)
	}

	var failed atomic.Int64
	promise := func(r *client.Record, err error) {
		if err != nil {
			failed.Add(1)
		}
	}
	for i := range 1000 {
		c.Produce(ctx, &client.Record{Topic: "events", Value: fmt.Appendf(nil, "event %d", i)}, promise)
	}
	if err := c.Flush(ctx); err != nil {
		log.Fatal(err)
	}
	offs, err := c.ListOffsets(ctx, "events", 0, client.End())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(offs.End, "records,", failed.Load(), "failed")
	// Output: 1000 records, 0 failed
}

// ExampleParsePosition shows the position grammar shared by the API and
// the command line.
func ExampleParsePosition() {
	for _, s := range []string{"start", "end", "42", "@2026-01-02T15:04:05Z", "@-1h30m", "yesterday"} {
		p, err := client.ParsePosition(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		if _, ok := p.TimeValue(); ok && s[1] == '-' {
			fmt.Println("a time 90 minutes ago")
			continue
		}
		fmt.Println(p)
	}
	// Output:
	// start
	// end
	// 42
	// @2026-01-02T15:04:05Z
	// a time 90 minutes ago
	// bad position "yesterday": want start, end, an offset, @TIME or @-DURATION
}
