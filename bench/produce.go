package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// ProduceConfig is one produce workload.
type ProduceConfig struct {
	// Records is how many records to send.
	Records int
	// Size is each record's value size in bytes.
	Size int
	// Rate is the offered load in records per second. 0 sends as fast as
	// the driver takes them (closed loop: latency is measured from the
	// call to Driver.Produce). With a rate the load is open loop:
	// record i is due at start + i/Rate, and its latency is measured from
	// that due time, so a stalled broker shows up in the latency instead
	// of slowing the sender down (no coordinated omission).
	Rate float64
	// Progress, if set, is called about once a second with the records
	// acknowledged so far.
	Progress func(acked int64, elapsed time.Duration)
}

// Produce runs a produce workload on d and returns its result. Records
// carry random values (so compression, were it on, would gain nothing).
// Every record must be acknowledged; the first failure ends the run.
func Produce(ctx context.Context, d Driver, cfg ProduceConfig) (*Result, error) {
	if cfg.Records <= 0 {
		return nil, fmt.Errorf("records %d: give a positive count", cfg.Records)
	}
	if cfg.Size < 0 {
		return nil, fmt.Errorf("size %d: give a size of 0 bytes or more", cfg.Size)
	}
	if cfg.Rate < 0 {
		return nil, fmt.Errorf("rate %v: give a positive rate, or 0 for as fast as possible", cfg.Rate)
	}
	// A pool of random values, so records differ without costing a
	// random fill each.
	const pool = 64
	values := make([][]byte, pool)
	for i := range values {
		values[i] = make([]byte, cfg.Size)
		for j := range values[i] {
			values[i][j] = byte(rand.Uint32())
		}
	}

	lat := newLatencies()
	tl := newTimeline()
	var acked atomic.Int64
	start := time.Now()
	stopProgress := progress(cfg.Progress, &acked, start)
	defer stopProgress()
	err := send(ctx, d, cfg, start,
		func(i int, _ time.Time) []byte { return values[i%pool] },
		func(due, now time.Time) {
			lat.record(now.Sub(due))
			tl.addLatency(now.Sub(start), now.Sub(due))
			acked.Add(1)
		})
	elapsed := time.Since(start)
	if err != nil {
		return nil, fmt.Errorf("after %d of %d records acknowledged: %w", acked.Load(), cfg.Records, err)
	}
	n := acked.Load()
	res := &Result{
		Workload:       "produce",
		Records:        n,
		Bytes:          n * int64(cfg.Size),
		Seconds:        elapsed.Seconds(),
		RecordsPerSec:  float64(n) / elapsed.Seconds(),
		MBPerSec:       float64(n) * float64(cfg.Size) / elapsed.Seconds() / 1e6,
		OfferedRate:    cfg.Rate,
		LatencyMS:      lat.summary(),
		Throughput:     tl.perSecond(),
		WorstLatencyMS: tl.worstPerSecond(),
		latencies:      lat,
		timeline:       tl,
	}
	return res, nil
}

// send sends cfg.Records records to d, record i with the value value(i,
// due), and calls acked with each acknowledged record's due time and the
// time of its acknowledgement. Closed loop (no rate) a record is due when
// it is handed to d; open loop record i is due at start + i/Rate, and the
// sender waits for that time, so a sender that falls behind still charges
// the wait to the latency. send returns once every record sent has been
// answered, with the first failure, or ctx's error if it ended first.
func send(ctx context.Context, d Driver, cfg ProduceConfig, start time.Time, value func(i int, due time.Time) []byte, acked func(due, now time.Time)) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg       sync.WaitGroup
		failOnce sync.Once
	)
	interval := time.Duration(0)
	if cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / cfg.Rate)
	}
	for i := range cfg.Records {
		if ctx.Err() != nil {
			break
		}
		due := time.Now()
		if interval > 0 {
			due = start.Add(time.Duration(i) * interval)
			if d := time.Until(due); d > 0 {
				if err := sleepCtx(ctx, d); err != nil {
					break
				}
			}
		}
		wg.Add(1)
		d.Produce(ctx, value(i, due), func(err error) {
			defer wg.Done()
			if err != nil {
				failOnce.Do(func() { cancel(err) })
				return
			}
			acked(due, time.Now())
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// sleepCtx waits for d or until ctx ends. It paces an open-loop sender:
// the wait is the schedule itself, not a stand-in for a condition.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// progress calls fn about once a second until the returned stop is called.
func progress(fn func(int64, time.Duration), acked *atomic.Int64, start time.Time) (stop func()) {
	if fn == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fn(acked.Load(), time.Since(start))
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); <-finished }
}
