package worker_test

import (
	"testing"
	"time"

	"github.com/runnel-dev/runnel/client/worker"
)

func TestExponentialBackoff(t *testing.T) {
	b := worker.ExponentialBackoff(time.Second, time.Minute, 0.2)
	for attempt := 1; attempt <= 12; attempt++ {
		want := min(time.Second<<(attempt-1), time.Minute)
		lo, hi := want*8/10, want*12/10
		seen := map[time.Duration]bool{}
		for range 200 {
			d := b(attempt)
			if d < lo || d > hi {
				t.Fatalf("attempt %d: delay %v outside [%v, %v]", attempt, d, lo, hi)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Errorf("attempt %d: 200 delays all %v; want jitter", attempt, b(attempt))
		}
	}
	exact := worker.ExponentialBackoff(100*time.Millisecond, time.Second, 0)
	var got []time.Duration
	for attempt := 1; attempt <= 6; attempt++ {
		got = append(got, exact(attempt))
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("no jitter: delays %v, want %v ms", got, want)
		}
	}
	if d := exact(1000); d != time.Second {
		t.Errorf("attempt 1000: %v, want the limit", d)
	}
}
