package client_test

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
)

// BenchmarkProduce produces 100-byte records asynchronously to one
// partition of an in-process broker and waits for every ack, with and
// without fsync. Records/s is the figure to read:
//
//	go test -run '^$' -bench Produce -benchtime 1000000x ./client/
func BenchmarkProduce(b *testing.B) {
	for _, bc := range []struct {
		name   string
		noSync bool
	}{{"fsync", false}, {"nosync", true}} {
		b.Run(bc.name, func(b *testing.B) {
			br := openBroker(b, "", broker.Options{NoSync: bc.noSync})
			c := newClient(b, br)
			createTopic(b, c, "bench", 1, nil)
			ctx := context.Background()

			recs := make([]client.Record, b.N)
			value := bytes.Repeat([]byte("x"), 100)
			var failed atomic.Int64
			promise := func(_ *client.Record, err error) {
				if err != nil {
					failed.Add(1)
				}
			}
			b.SetBytes(100)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range recs {
				recs[i] = client.Record{Topic: "bench", Value: value}
				c.Produce(ctx, &recs[i], promise)
			}
			if err := c.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d records failed", n)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkConsume replays 100-byte records from one partition of an
// in-process broker.
//
//	go test -run '^$' -bench Consume -benchtime 1000000x ./client/
func BenchmarkConsume(b *testing.B) {
	br := openBroker(b, "", broker.Options{NoSync: true})
	c := newClient(b, br)
	createTopic(b, c, "bench", 1, nil)
	ctx := context.Background()
	value := bytes.Repeat([]byte("x"), 100)
	recs := make([]client.Record, b.N)
	for i := range recs {
		recs[i] = client.Record{Topic: "bench", Value: value}
		c.Produce(ctx, &recs[i], nil)
	}
	if err := c.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(100)
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for r, err := range c.Consume(ctx, "bench", 0, client.Start()) {
		if err != nil {
			b.Fatal(err)
		}
		if r.Offset != int64(n) {
			b.Fatalf("offset %d, want %d", r.Offset, n)
		}
		if n++; n == b.N {
			break
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
