package client_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestProduceAsksReplicaWhenLeaderIsDown: the metadata still names a leader
// that is gone. The producer asks another replica of the partition, follows
// the leader it names, and writes there, without waiting for the metadata
// to catch up.
func TestProduceAsksReplicaWhenLeaderIsDown(t *testing.T) {
	b, c := startFake(t, 2), startFake(t, 3)
	gone := deadAddr(t)
	nodes := []*runnelpb.Node{{Id: 1, Addr: gone}, {Id: 2, Addr: b.addr}, {Id: 3, Addr: c.addr}}
	// The metadata keeps naming node 1; node 2 knows node 3 leads now.
	b.set(func(f *fakeBroker) {
		f.nodes, f.leader, f.replicas = nodes, 1, []int32{1, 2, 3}
		f.onBatch = func(int, *runnelpb.ProduceRequest) (*runnelpb.Error, error) { return notLeader(c), nil }
	})
	c.set(func(f *fakeBroker) { f.nodes, f.leader, f.replicas = nodes, 1, []int32{1, 2, 3} })
	cl := fakeClient(t, b, client.RetryBackoff(time.Second, time.Second))
	ctx, cancel := context.WithTimeout(testContext(t), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := cl.ProduceSync(ctx, &client.Record{Topic: "t", Value: []byte("v")}); err != nil {
		t.Fatalf("ProduceSync: %v", err)
	}
	if len(c.writtenCopy()) != 1 {
		t.Fatalf("the leader node 3 wrote %d batches, want 1", len(c.writtenCopy()))
	}
	// With a backoff of 1s, only retries that go at once to the next
	// broker make it this fast.
	if took := time.Since(start); took > 900*time.Millisecond {
		t.Errorf("produce took %v; a dead leader, a replica's hint and the new leader should need no backoff", took)
	}
}

// TestProduceRetriesAtOnceAfterRequestTimeout: a broker that waited out the
// request timeout and answered OUTCOME_UNKNOWN has paused long enough; the
// retry goes at once.
func TestProduceRetriesAtOnceAfterRequestTimeout(t *testing.T) {
	f := startFake(t, 1)
	var timeouts []uint32
	f.set(func(f *fakeBroker) {
		f.onBatch = func(n int, req *runnelpb.ProduceRequest) (*runnelpb.Error, error) {
			timeouts = append(timeouts, req.TimeoutMs)
			if n == 0 {
				time.Sleep(time.Duration(req.TimeoutMs) * time.Millisecond) // the broker waiting out the timeout
				return outcomeUnknown(), nil
			}
			return nil, nil
		}
	})
	c := fakeClient(t, f, client.RequestTimeout(200*time.Millisecond), client.RetryBackoff(2*time.Second, 2*time.Second))
	start := time.Now()
	if err := c.ProduceSync(testContext(t), &client.Record{Topic: "t", Value: []byte("v")}); err != nil {
		t.Fatalf("ProduceSync: %v", err)
	}
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("produce took %v, want the retry at once after the 200ms timeout", took)
	}
	f.set(func(*fakeBroker) {
		if len(timeouts) != 2 || timeouts[0] != 200 {
			t.Errorf("timeout_ms sent %v, want 200 twice", timeouts)
		}
	})
}

// TestProduceRequestTimeoutStopsAtDeliveryDeadline: a request never asks the
// broker to wait past the batch's delivery timeout, so the producer fails
// in time even with a long RequestTimeout.
func TestProduceRequestTimeoutStopsAtDeliveryDeadline(t *testing.T) {
	f := startFake(t, 1)
	var sent uint32
	f.set(func(f *fakeBroker) {
		f.onBatch = func(n int, req *runnelpb.ProduceRequest) (*runnelpb.Error, error) {
			sent = req.TimeoutMs
			time.Sleep(time.Duration(req.TimeoutMs) * time.Millisecond)
			return outcomeUnknown(), nil
		}
	})
	c := fakeClient(t, f, client.RequestTimeout(time.Minute), client.DeliveryTimeout(300*time.Millisecond))
	start := time.Now()
	err := c.ProduceSync(testContext(t), &client.Record{Topic: "t", Value: []byte("v")})
	if !errors.Is(err, client.ErrUnknownOutcome) {
		t.Fatalf("err = %v, want the broker's ErrUnknownOutcome", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("produce with a delivery timeout of 300ms failed after %v", took)
	}
	f.set(func(*fakeBroker) {
		if sent == 0 || sent > 300 {
			t.Errorf("timeout_ms %d, want at most the 300ms delivery timeout", sent)
		}
	})
}

// TestProduceDoesNotHangWhenTopicVanishes: a metadata answer without the
// topic empties the cache; the partitions that then wait for a leader must
// still be routed once the metadata is fetched again, not wait forever.
func TestProduceDoesNotHangWhenTopicVanishes(t *testing.T) {
	f := startFake(t, 1)
	c := fakeClient(t, f)
	ctx := testContext(t)
	if err := c.ProduceSync(ctx, &client.Record{Topic: "t", Value: []byte("a")}); err != nil {
		t.Fatal(err)
	}
	f.set(func(f *fakeBroker) { f.noTopics = true })
	if _, err := c.Metadata(ctx); err != nil { // the cache learns there are no topics
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := c.ProduceSync(short, &client.Record{Topic: "t", Value: []byte("b")})
	if !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("produce to a topic the metadata no longer has: %v, want ErrNotFound at once", err)
	}
	// Back again: produces.
	f.set(func(f *fakeBroker) { f.noTopics = false })
	if err := c.ProduceSync(short, &client.Record{Topic: "t", Value: []byte("c")}); err != nil {
		t.Fatalf("produce once the topic is back: %v", err)
	}
}

// TestProduceSequenceErrors checks how the producer treats the idempotent
// producer's answers: a duplicate counts as written (offset unknown), an
// out-of-order batch is retried, a fenced producer fails at once.
func TestProduceSequenceErrors(t *testing.T) {
	seqErr := func(code codes.Code, reason string) *runnelpb.Error {
		return &runnelpb.Error{Code: int32(code), Reason: reason, Message: "t/0: " + reason}
	}
	t.Run("duplicate", func(t *testing.T) {
		f := startFake(t, 1)
		f.set(func(f *fakeBroker) {
			f.onBatch = func(int, *runnelpb.ProduceRequest) (*runnelpb.Error, error) {
				return seqErr(codes.AlreadyExists, "DUPLICATE_SEQUENCE"), nil
			}
		})
		r := &client.Record{Topic: "t", Value: []byte("v")}
		if err := fakeClient(t, f).ProduceSync(testContext(t), r); err != nil {
			t.Fatalf("a batch the partition wrote before: %v, want it acknowledged", err)
		}
		if r.Offset != -1 {
			t.Fatalf("offset %d, want -1 (unknown)", r.Offset)
		}
	})
	t.Run("out of order", func(t *testing.T) {
		f := startFake(t, 1)
		f.set(func(f *fakeBroker) {
			f.onBatch = func(n int, _ *runnelpb.ProduceRequest) (*runnelpb.Error, error) {
				if n == 0 {
					return seqErr(codes.FailedPrecondition, "OUT_OF_ORDER_SEQUENCE"), nil
				}
				return nil, nil
			}
		})
		if err := fakeClient(t, f).ProduceSync(testContext(t), &client.Record{Topic: "t", Value: []byte("v")}); err != nil {
			t.Fatalf("ProduceSync: %v, want the retry to succeed", err)
		}
	})
	t.Run("fenced", func(t *testing.T) {
		f := startFake(t, 1)
		f.set(func(f *fakeBroker) {
			f.onBatch = func(int, *runnelpb.ProduceRequest) (*runnelpb.Error, error) {
				return seqErr(codes.FailedPrecondition, "PRODUCER_FENCED"), nil
			}
		})
		err := fakeClient(t, f).ProduceSync(testContext(t), &client.Record{Topic: "t", Value: []byte("v")})
		if !errors.Is(err, client.ErrProducerFenced) || errors.Is(err, client.ErrNotLeader) {
			t.Fatalf("err = %v, want ErrProducerFenced and not ErrNotLeader", err)
		}
		var sent int
		f.set(func(f *fakeBroker) { sent = f.batches })
		if sent != 1 {
			t.Fatalf("sent %d times, want once", sent)
		}
	})
}

// TestAdminRetriesWhileBrokersCannotServe: admin calls answered with no
// leader, catching up or shutting down are tried again within the caller's
// context, and give up with the broker's answer when it ends.
func TestAdminRetriesWhileBrokersCannotServe(t *testing.T) {
	for _, reason := range []string{"NO_LEADER", "CATCHING_UP", "SHUTTING_DOWN"} {
		t.Run(reason, func(t *testing.T) {
			f := startFake(t, 1)
			f.set(func(f *fakeBroker) {
				f.onAdmin = func(n int, _ string) error {
					if n < 3 {
						return unavailable(t, reason)
					}
					return nil
				}
			})
			c := fakeClient(t, f)
			ctx := testContext(t)
			if _, err := c.DescribeTopic(ctx, "t"); err != nil {
				t.Fatalf("DescribeTopic: %v, want it retried until the broker serves", err)
			}
			if _, err := c.CreateTopic(ctx, "u", 1, 1, nil); err != nil {
				t.Fatalf("CreateTopic: %v", err)
			}
			if _, err := c.ClusterInfo(ctx, ""); err != nil {
				t.Fatalf("ClusterInfo: %v", err)
			}
		})
	}
	t.Run("context ends", func(t *testing.T) {
		f := startFake(t, 1)
		f.set(func(f *fakeBroker) {
			f.onAdmin = func(int, string) error { return unavailable(t, "NO_LEADER") }
		})
		c := fakeClient(t, f)
		ctx, cancel := context.WithTimeout(testContext(t), 200*time.Millisecond)
		defer cancel()
		_, err := c.CreateTopic(ctx, "u", 1, 1, nil)
		var e *client.Error
		if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &e) || e.Reason != "NO_LEADER" {
			t.Fatalf("err = %v, want the context's end with the broker's NO_LEADER answer", err)
		}
	})
	t.Run("not retried", func(t *testing.T) {
		f := startFake(t, 1)
		f.set(func(f *fakeBroker) {
			f.onAdmin = func(int, string) error { return unavailable(t, "OUTCOME_UNKNOWN") }
		})
		c := fakeClient(t, f)
		if _, err := c.CreateTopic(testContext(t), "u", 1, 1, nil); !errors.Is(err, client.ErrUnknownOutcome) {
			t.Fatalf("err = %v, want ErrUnknownOutcome", err)
		}
		var calls int
		f.set(func(f *fakeBroker) { calls = f.adminCalls })
		if calls != 1 {
			t.Fatalf("%d calls, want 1: a create whose outcome is unknown is not retried blindly", calls)
		}
	})
}
