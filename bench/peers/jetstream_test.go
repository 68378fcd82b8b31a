package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/bench"
	"github.com/runnel-dev/runnel/bench/drivertest"
)

// openJetStream returns an open function for the conformance suite: new
// servers per test, so every stream starts empty.
func openJetStream(servers int, syncAlways, inProcess bool) drivertest.Open {
	return func(t *testing.T, partitions int) bench.Driver {
		t.Helper()
		srv, err := startJetStream(t.Context(), servers, syncAlways, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.shutdown)
		d, err := newJetStream(t.Context(), srv, jetStreamOptions{Streams: partitions, Replicas: servers, MaxPending: 100, InProcess: inProcess})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.Close)
		return d
	}
}

func TestJetStreamDriver(t *testing.T) {
	drivertest.Run(t, openJetStream(1, false, false))
}

func TestJetStreamDriverSyncAlwaysInProcess(t *testing.T) {
	drivertest.Run(t, openJetStream(1, true, true))
}

func TestJetStreamDriverCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts clusters of three servers")
	}
	drivertest.Run(t, openJetStream(3, false, false))
}

// TestJetStreamCancelResolvesEveryPublish checks that when the driver's
// context ends, every publish still awaiting its ack is resolved, exactly
// once, so a canceled run does not wait for acks.
func TestJetStreamCancelResolvesEveryPublish(t *testing.T) {
	srv, err := startJetStream(t.Context(), 1, false, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.shutdown)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	d, err := newJetStream(ctx, srv, jetStreamOptions{Streams: 1, Replicas: 1, MaxPending: 500})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	const n = 2000
	var mu sync.Mutex
	calls := make([]int, n)
	var wg sync.WaitGroup
	wg.Add(n)
	value := make([]byte, 100)
	for i := range n {
		if i == n/2 {
			cancel()
		}
		d.Produce(ctx, value, func(error) {
			mu.Lock()
			calls[i]++
			mu.Unlock()
			wg.Done()
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("publishes not resolved 30s after the context ended")
	}
	for i, c := range calls {
		if c != 1 {
			t.Fatalf("record %d resolved %d times", i, c)
		}
	}
}
