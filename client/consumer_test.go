package client_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/client"
)

// produceN produces n records "0".."n-1" to topic/partition 0 in batches
// of per.
func produceN(t testing.TB, c *client.Client, topic string, n, per int) {
	t.Helper()
	ctx := testContext(t)
	for i := 0; i < n; i += per {
		var recs []*client.Record
		for j := i; j < min(n, i+per); j++ {
			recs = append(recs, &client.Record{Topic: topic, Value: []byte(fmt.Sprint(j))})
		}
		if err := c.ProduceSync(ctx, recs...); err != nil {
			t.Fatal(err)
		}
	}
}

// TestConsumeFromOffsetInsideBatch starts in the middle of stored batches:
// records below the offset are skipped.
func TestConsumeFromOffsetInsideBatch(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			b := openBroker(t, tr.addr)
			c := newClient(t, b)
			createTopic(t, c, "t", 1, nil)
			produceN(t, c, "t", 100, 10)
			want := int64(37)
			for r, err := range c.Consume(testContext(t), "t", 0, client.Offset(37)) {
				if err != nil {
					t.Fatal(err)
				}
				if r.Offset != want || string(r.Value) != fmt.Sprint(want) || r.Topic != "t" || r.Partition != 0 {
					t.Fatalf("got %s/%d@%d %q, want offset %d", r.Topic, r.Partition, r.Offset, r.Value, want)
				}
				if want++; want == 100 {
					break
				}
			}
		})
	}
}

// TestConsumeWaitsAtEnd reads from End, then sees records produced after.
func TestConsumeWaitsAtEnd(t *testing.T) {
	b := openBroker(t, "")
	c := newClient(t, b)
	createTopic(t, c, "t", 1, nil)
	produceN(t, c, "t", 5, 5)

	ctx := testContext(t)
	got := make(chan string)
	go func() {
		for r, err := range c.Consume(ctx, "t", 0, client.End()) {
			if err != nil {
				got <- err.Error()
				return
			}
			got <- fmt.Sprintf("%d:%s", r.Offset, r.Value)
		}
	}()
	// When the consumer has reached the end cannot be observed, and a record
	// produced before then is not for it; so produce until one arrives.
	for {
		if err := c.ProduceSync(ctx, &client.Record{Topic: "t", Value: []byte("new")}); err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-got:
			if !strings.HasSuffix(s, ":new") || strings.HasPrefix(s, "0:") {
				t.Fatalf("consumer from end got %q", s)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestConsumeManyBatchesUnderCredit reads far more than the credit window,
// so credit must be granted as batches are consumed.
func TestConsumeManyBatchesUnderCredit(t *testing.T) {
	b := openBroker(t, "127.0.0.1:0")
	c := newClient(t, b, client.FetchCredit(64<<10, 16<<10))
	createTopic(t, c, "t", 1, nil)
	value := bytes.Repeat([]byte("v"), 1000)
	var recs []*client.Record
	for range 2000 {
		recs = append(recs, &client.Record{Topic: "t", Value: value})
	}
	if err := c.ProduceSync(testContext(t), recs...); err != nil {
		t.Fatal(err)
	}
	n := 0
	for r, err := range c.Consume(testContext(t), "t", 0, client.Start()) {
		if err != nil {
			t.Fatal(err)
		}
		if r.Offset != int64(n) || len(r.Value) != 1000 {
			t.Fatalf("record %d: offset %d, %d bytes", n, r.Offset, len(r.Value))
		}
		if n++; n == len(recs) {
			break
		}
	}
}

func TestConsumeFromTime(t *testing.T) {
	b := openBroker(t, "")
	c := newClient(t, b)
	createTopic(t, c, "t", 1, nil)
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	var recs []*client.Record
	for i := range 10 {
		recs = append(recs, &client.Record{Topic: "t", Value: []byte(fmt.Sprint(i)), Timestamp: base.Add(time.Duration(i) * time.Second)})
	}
	if err := c.ProduceSync(testContext(t), recs...); err != nil {
		t.Fatal(err)
	}
	for r, err := range c.Consume(testContext(t), "t", 0, client.Time(base.Add(3500*time.Millisecond))) {
		if err != nil {
			t.Fatal(err)
		}
		if r.Offset != 4 || !r.Timestamp.Equal(base.Add(4*time.Second)) {
			t.Fatalf("first record at or after 3.5s: offset %d at %v", r.Offset, r.Timestamp)
		}
		break
	}
	offs, err := c.ListOffsets(testContext(t), "t", 0, client.Time(base.Add(time.Hour+time.Minute)))
	if err != nil || offs.Offset != 10 || offs.End != 10 {
		t.Fatalf("ListOffsets past the last record = %+v, %v; want the end", offs, err)
	}
}

func TestConsumeEndsWithContext(t *testing.T) {
	b := openBroker(t, "")
	c := newClient(t, b)
	createTopic(t, c, "t", 1, nil)
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	produceN(t, c, "t", 3, 3)
	n := 0
	for _, err := range c.Consume(ctx, "t", 0, client.Start()) {
		if err != nil {
			t.Fatalf("ending the context gave %v, want a quiet end", err)
		}
		if n++; n == 3 {
			cancel()
		}
	}
	if n != 3 {
		t.Fatalf("read %d records", n)
	}
}

func TestRecordClone(t *testing.T) {
	r := &client.Record{Topic: "t", Key: []byte("k"), Value: []byte("v"), Headers: []client.Header{{Key: "h", Value: []byte("x")}}}
	c := r.Clone()
	r.Key[0], r.Value[0], r.Headers[0].Value[0] = 'K', 'V', 'X'
	if string(c.Key) != "k" || string(c.Value) != "v" || string(c.Headers[0].Value) != "x" {
		t.Fatalf("clone shares bytes: %+v", c)
	}
}
