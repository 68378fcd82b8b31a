package client_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/runnel-dev/runnel/client"
)

func TestProduceConsumeRoundTrip(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			b := openBroker(t, tr.addr)
			c := newClient(t, b)
			ctx := testContext(t)
			createTopic(t, c, "t", 1, nil)

			const n = 1000
			recs := make([]*client.Record, n)
			for i := range recs {
				recs[i] = &client.Record{Topic: "t", Key: []byte(fmt.Sprint("k", i%7)), Value: []byte(fmt.Sprint(i)),
					Headers: []client.Header{{Key: "h", Value: []byte("v")}}}
			}
			if err := c.ProduceSync(ctx, recs...); err != nil {
				t.Fatalf("ProduceSync: %v", err)
			}
			for i, r := range recs {
				if r.Offset != int64(i) || r.Partition != 0 {
					t.Fatalf("record %d: partition %d offset %d", i, r.Partition, r.Offset)
				}
			}
			i := 0
			for r, err := range c.Consume(ctx, "t", 0, client.Start()) {
				if err != nil {
					t.Fatalf("consume: %v", err)
				}
				if r.Offset != int64(i) || string(r.Value) != fmt.Sprint(i) || string(r.Key) != fmt.Sprint("k", i%7) {
					t.Fatalf("record %d: offset %d key %q value %q", i, r.Offset, r.Key, r.Value)
				}
				if v, _ := headerValue(r, "h"); v != "v" {
					t.Fatalf("record %d: headers %v", i, r.Headers)
				}
				i++
				if i == n {
					break
				}
			}
		})
	}
}

func headerValue(r *client.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

func TestProduceUnknownTopic(t *testing.T) {
	b := openBroker(t, "127.0.0.1:0")
	c := newClient(t, b)
	err := c.ProduceSync(testContext(t), &client.Record{Topic: "nope", Value: []byte("x")})
	if !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}
