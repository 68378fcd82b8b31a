package worker

import (
	"math/rand/v2"
	"time"
)

// Backoff returns how long a job waits before its next attempt after
// attempt (counted from 1) failed.
type Backoff func(attempt int) time.Duration

// Defaults of the worker's backoff.
const (
	DefaultBackoffBase   = time.Second
	DefaultBackoffMax    = 10 * time.Minute
	DefaultBackoffJitter = 0.2
)

// ExponentialBackoff returns a Backoff of base·2^(attempt-1), at most limit,
// scaled by a random factor in [1-jitter, 1+jitter] so that jobs that failed
// together do not all come back together. jitter is clamped to [0, 1].
func ExponentialBackoff(base, limit time.Duration, jitter float64) Backoff {
	jitter = min(max(jitter, 0), 1)
	return func(attempt int) time.Duration {
		d := base
		for i := 1; i < attempt && d < limit; i++ {
			d *= 2
		}
		d = min(d, limit)
		if jitter == 0 || d <= 0 {
			return d
		}
		f := 1 - jitter + 2*jitter*rand.Float64()
		return time.Duration(float64(d) * f)
	}
}
