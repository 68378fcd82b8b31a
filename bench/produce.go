package bench

import (
	"context"
	"errors"
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

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	lat := newLatencies()
	tp := newTimeline()
	var (
		acked    atomic.Int64
		wg       sync.WaitGroup
		failOnce sync.Once
	)
	wg.Add(cfg.Records)
	start := time.Now()
	stopProgress := progress(cfg.Progress, &acked, start)
	defer stopProgress()
	interval := time.Duration(0)
	if cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / cfg.Rate)
	}
	sent := 0
	for i := range cfg.Records {
		if ctx.Err() != nil {
			break
		}
		sendAt := time.Now()
		if interval > 0 {
			// The due time, not the time the loop got here: a sender
			// that fell behind still charges the wait to the latency.
			sendAt = start.Add(time.Duration(i) * interval)
			if d := time.Until(sendAt); d > 0 {
				if err := sleepCtx(ctx, d); err != nil {
					break
				}
			}
		}
		d.Produce(ctx, values[i%pool], func(err error) {
			defer wg.Done()
			if err != nil {
				failOnce.Do(func() { cancel(err) })
				return
			}
			now := time.Now()
			lat.record(now.Sub(sendAt))
			tp.add(now.Sub(start))
			acked.Add(1)
		})
		sent++
	}
	// Records never sent will never call back.
	wg.Add(sent - cfg.Records)
	wg.Wait()
	elapsed := time.Since(start)
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return nil, fmt.Errorf("after %d of %d records acknowledged: %w", acked.Load(), cfg.Records, err)
	} else if err != nil {
		return nil, err
	}
	n := acked.Load()
	res := &Result{
		Workload:      "produce",
		Records:       n,
		Bytes:         n * int64(cfg.Size),
		Seconds:       elapsed.Seconds(),
		RecordsPerSec: float64(n) / elapsed.Seconds(),
		MBPerSec:      float64(n) * float64(cfg.Size) / elapsed.Seconds() / 1e6,
		OfferedRate:   cfg.Rate,
		LatencyMS:     lat.summary(),
		Throughput:    tp.perSecond(),
		latencies:     lat,
	}
	return res, nil
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
