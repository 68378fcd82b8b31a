package main

import (
	"testing"

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
