package client_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/proto/runnelpb"
)

func fakeClient(t *testing.T, f *fakeBroker, opts ...client.Option) *client.Client {
	t.Helper()
	opts = append([]client.Option{client.Brokers(f.addr), client.RetryBackoff(time.Millisecond, 10*time.Millisecond)}, opts...)
	c, err := client.New(context.Background(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestProduceFollowsLeaderHint(t *testing.T) {
	a, b := startFake(t, 1), startFake(t, 2)
	nodes := []*runnelpb.Node{{Id: 1, Addr: a.addr}, {Id: 2, Addr: b.addr}}
	a.set(func(f *fakeBroker) {
		f.nodes = nodes
		f.onBatch = func(int, *runnelpb.ProduceRequest) (*runnelpb.Error, error) {
			a.set(func(f *fakeBroker) { f.leader = 2 }) // leadership has moved
			return notLeader(b), nil
		}
	})
	b.set(func(f *fakeBroker) { f.nodes, f.leader = nodes, 2 })
	c := fakeClient(t, a)
	r := &client.Record{Topic: "t", Value: []byte("v")}
	if err := c.ProduceSync(testContext(t), r); err != nil {
		t.Fatalf("ProduceSync: %v", err)
	}
	if got := len(b.writtenCopy()); got != 1 {
		t.Fatalf("leader wrote %d batches, want 1", got)
	}
	if len(a.writtenCopy()) != 0 {
		t.Fatalf("the old leader wrote the batch")
	}
}

// TestProduceRetriesRetriable checks each retriable failure is retried on
// the same partition until it succeeds, once written.
func TestProduceRetriesRetriable(t *testing.T) {
	cases := map[string]func(n int) (*runnelpb.Error, error){
		"retry delay":     func(int) (*runnelpb.Error, error) { return backlogFull(5 * time.Millisecond), nil },
		"unknown outcome": func(int) (*runnelpb.Error, error) { return outcomeUnknown(), nil },
		"stream broken":   func(int) (*runnelpb.Error, error) { return nil, status.Error(codes.Unavailable, "connection reset") },
		"no leader": func(int) (*runnelpb.Error, error) {
			return &runnelpb.Error{Code: int32(codes.Unavailable), Reason: "NO_LEADER", Message: "no leader for t/0 yet"}, nil
		},
	}
	for name, fail := range cases {
		t.Run(name, func(t *testing.T) {
			f := startFake(t, 1)
			f.set(func(f *fakeBroker) {
				f.onBatch = func(n int, _ *runnelpb.ProduceRequest) (*runnelpb.Error, error) {
					if n < 2 {
						return fail(n)
					}
					return nil, nil
				}
			})
			c := fakeClient(t, f)
			recs := []*client.Record{{Topic: "t", Value: []byte("a")}, {Topic: "t", Value: []byte("b")}}
			if err := c.ProduceSync(testContext(t), recs...); err != nil {
				t.Fatalf("ProduceSync: %v", err)
			}
			written := 0
			for _, b := range f.writtenCopy() {
				written += b.Count()
			}
			if written != 2 {
				t.Fatalf("%d records written, want each of the 2 once", written)
			}
			if recs[0].Offset != 0 || recs[1].Offset != 1 {
				t.Fatalf("offsets %d, %d", recs[0].Offset, recs[1].Offset)
			}
		})
	}
}

func TestProduceNonRetriableFailsAtOnce(t *testing.T) {
	f := startFake(t, 1)
	f.set(func(f *fakeBroker) {
		f.onBatch = func(int, *runnelpb.ProduceRequest) (*runnelpb.Error, error) { return tooLarge(), nil }
	})
	c := fakeClient(t, f)
	err := c.ProduceSync(testContext(t), &client.Record{Topic: "t", Value: []byte("v")})
	if !errors.Is(err, client.ErrInvalidArgument) {
		t.Fatalf("err = %v, want ErrInvalidArgument", err)
	}
	var e *client.Error
	if !errors.As(err, &e) || e.Reason != "BATCH_TOO_LARGE" || e.Metadata["limit"] != "1048576" {
		t.Fatalf("err = %#v, want BATCH_TOO_LARGE with its limit", e)
	}
	if !strings.Contains(err.Error(), "t/0") {
		t.Fatalf("err %q does not name the partition", err)
	}
	var sent int
	f.set(func(f *fakeBroker) { sent = f.batches })
	if sent != 1 {
		t.Fatalf("sent %d times, want 1", sent)
	}
}

func TestProduceGivesUpAtDeliveryTimeout(t *testing.T) {
	f := startFake(t, 1)
	f.set(func(f *fakeBroker) {
		f.onBatch = func(int, *runnelpb.ProduceRequest) (*runnelpb.Error, error) { return outcomeUnknown(), nil }
	})
	c := fakeClient(t, f, client.DeliveryTimeout(100*time.Millisecond))
	err := c.ProduceSync(testContext(t), &client.Record{Topic: "t", Value: []byte("v")})
	if !errors.Is(err, client.ErrUnknownOutcome) || !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("err = %v, want the last error, ErrUnknownOutcome", err)
	}
}

func TestProduceBlocksWhenBufferFull(t *testing.T) {
	f := startFake(t, 1)
	hold := make(chan struct{})
	f.set(func(f *fakeBroker) { f.hold = hold })
	c := fakeClient(t, f, client.MaxBatchBytes(1024), client.MaxBufferedBytes(2048), client.Linger(0))
	ctx := testContext(t)

	var mu sync.Mutex
	var acked []*client.Record
	var errs []error
	promise := func(r *client.Record, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
			return
		}
		acked = append(acked, r)
	}
	// Fill the buffer: 2048 bytes hold three records of ~600 bytes.
	value := make([]byte, 600)
	var buffered []*client.Record
	for range 3 {
		r := &client.Record{Topic: "t", Value: value}
		buffered = append(buffered, r)
		c.Produce(ctx, r, promise)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	c.Produce(short, &client.Record{Topic: "t", Value: value}, promise)
	mu.Lock()
	if len(errs) != 1 || !errors.Is(errs[0], context.DeadlineExceeded) {
		t.Fatalf("a Produce into a full buffer gave %v, want it to block until its context ended", errs)
	}
	mu.Unlock()

	close(hold)
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(acked) != 3 {
		t.Fatalf("%d records acked after the broker answered, want 3", len(acked))
	}
	for i, r := range acked {
		if r != buffered[i] || r.Offset != int64(i) {
			t.Fatalf("ack %d: record %p offset %d, want %p offset %d (in order)", i, r, r.Offset, buffered[i], i)
		}
	}
}

func TestCloseFailsWhatItCannotFlush(t *testing.T) {
	f := startFake(t, 1)
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	f.set(func(f *fakeBroker) { f.hold = hold })
	c, err := client.New(context.Background(), client.Brokers(f.addr), client.DeliveryTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	c.Produce(testContext(t), &client.Record{Topic: "t", Value: []byte("v")}, func(_ *client.Record, err error) { done <- err })
	if err := c.Close(); err == nil {
		t.Fatalf("Close flushed a record the broker never acked")
	}
	if err := <-done; !errors.Is(err, client.ErrClosed) {
		t.Fatalf("promise got %v, want ErrClosed", err)
	}
	if err := c.ProduceSync(testContext(t), &client.Record{Topic: "t"}); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("ProduceSync after Close: %v, want ErrClosed", err)
	}
}

// TestProduceGivesUpOnSilentBroker: a broker that takes a request and never
// answers costs a RequestTimeout, then the batch is sent again.
func TestProduceGivesUpOnSilentBroker(t *testing.T) {
	f := startFake(t, 1)
	silent := make(chan struct{})
	t.Cleanup(func() { close(silent) })
	f.set(func(f *fakeBroker) {
		f.onBatch = func(n int, _ *runnelpb.ProduceRequest) (*runnelpb.Error, error) {
			if n == 0 {
				<-silent
			}
			return nil, nil
		}
	})
	c := fakeClient(t, f, client.RequestTimeout(50*time.Millisecond))
	r := &client.Record{Topic: "t", Value: []byte("v")}
	if err := c.ProduceSync(testContext(t), r); err != nil {
		t.Fatalf("ProduceSync: %v", err)
	}
	if r.Offset != 0 {
		t.Fatalf("offset %d", r.Offset)
	}
}
