package client_test

import (
	"context"
	"crypto/rand"
	"sync/atomic"
	"testing"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
)

// BenchmarkProduce produces 100-byte records asynchronously to one
// partition of a broker, in process or over a loopback socket, and waits
// for every ack, with and without fsync. Records/s is the figure to read;
// records/fsync says how well acknowledgements share an fsync:
//
//	go test -run '^$' -bench Produce -benchtime 1000000x ./client/
func BenchmarkProduce(b *testing.B) {
	for _, bc := range []struct {
		name   string
		addr   string
		noSync bool
	}{{"fsync/inprocess", "", false}, {"fsync/tcp", "127.0.0.1:0", false}, {"nosync/inprocess", "", true}} {
		b.Run(bc.name, func(b *testing.B) {
			br := openBroker(b, bc.addr, broker.Options{NoSync: bc.noSync})
			c := newClient(b, br)
			createTopic(b, c, "bench", 1, nil)
			ctx := context.Background()

			recs := make([]client.Record, b.N)
			// Random values: storage compresses, so repeated bytes would
			// flatter it.
			values := make([]byte, 100*b.N)
			rand.Read(values)
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
				recs[i] = client.Record{Topic: "bench", Value: values[i*100 : (i+1)*100]}
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
			if st := br.Stats(); st.Syncs > 0 {
				b.ReportMetric(float64(st.Records)/float64(st.Syncs), "records/fsync")
			}
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
	values := make([]byte, 100*b.N)
	rand.Read(values)
	recs := make([]client.Record, b.N)
	for i := range recs {
		recs[i] = client.Record{Topic: "bench", Value: values[i*100 : (i+1)*100]}
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
