package client_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
)

// ExampleClient_Queue hands the records of a topic out as jobs: each is
// leased to one consumer of the queue group at a time, and acked, nacked
// to try again later, or rejected to the dead-letter topic. Any number of
// consumers may share the group, on any number of machines.
func ExampleClient_Queue() {
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
	if _, err := c.CreateTopic(ctx, "emails", 1, 1, nil); err != nil {
		log.Fatal(err)
	}
	if err := c.ProduceSync(ctx,
		&client.Record{Topic: "emails", Value: []byte("welcome ann")},
		&client.Record{Topic: "emails", Value: []byte("welcome bob")},
	); err != nil {
		log.Fatal(err)
	}

	q, err := c.Queue("mailers", "emails", client.QueueOptions{Visibility: time.Minute, MaxDeliveries: 5})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()
	for range 3 {
		d, err := q.Next(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s (attempt %d)\n", d.Value, d.Attempt)
		if string(d.Value) == "welcome bob" && d.Attempt == 1 {
			// The mail server is busy: try again in a moment.
			if err := q.Nack(ctx, d, 10*time.Millisecond); err != nil {
				log.Fatal(err)
			}
			continue
		}
		if err := q.Ack(ctx, d); err != nil {
			log.Fatal(err)
		}
	}
	// Output:
	// welcome ann (attempt 1)
	// welcome bob (attempt 1)
	// welcome bob (attempt 2)
}
