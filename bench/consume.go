package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// ConsumeConfig is a read workload over records already in a topic.
type ConsumeConfig struct {
	// Group, when set, reads as Members members of this consumer group
	// (the driver must be a GroupReader); otherwise one reader per
	// partition reads from the start.
	Group   string
	Members int
	// Progress, if set, is called about once a second.
	Progress func(read int64, elapsed time.Duration)
}

// Consume reads every record the topic holds when it starts, from offset 0
// (or, for a group, from the group's committed offsets, which a new group
// does not have) and reports the read rate. Latency percentiles are the
// time from the start of the run until each record was read, which for a
// replay shows how evenly the read progressed.
func Consume(ctx context.Context, d Driver, cfg ConsumeConfig) (*Result, error) {
	var gr GroupReader
	if cfg.Group != "" {
		var ok bool
		if gr, ok = d.(GroupReader); !ok {
			return nil, fmt.Errorf("group consume: %T has no consumer groups", d)
		}
	}
	lengths, err := d.Lengths(ctx)
	if err != nil {
		return nil, err
	}
	var want int64
	for _, n := range lengths {
		want += n
	}
	if want == 0 {
		return nil, errors.New("the topic is empty; produce records into it first")
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	lat := newLatencies()
	tl := newTimeline()
	var read, size atomic.Int64
	start := time.Now()
	stop := progress(cfg.Progress, &read, start)
	defer stop()
	doneOne := func(value []byte) {
		size.Add(int64(len(value)))
		since := time.Since(start)
		lat.record(since)
		tl.add(since)
		if read.Add(1) == want {
			cancel(nil)
		}
	}
	var wg sync.WaitGroup
	if gr == nil {
		for p, n := range lengths {
			if n == 0 {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := d.Read(ctx, p, n, doneOne); err != nil {
					cancel(err)
				}
			}()
		}
	} else {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := gr.ReadGroup(ctx, cfg.Group, max(cfg.Members, 1), doneOne); err != nil {
				cancel(err)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return nil, fmt.Errorf("after %d of %d records read: %w", read.Load(), want, err)
	}
	if n := read.Load(); n < want {
		// Canceled from outside before the end.
		return nil, fmt.Errorf("after %d of %d records read: %w", n, want, context.Canceled)
	}
	n := read.Load()
	bytes := size.Load()
	workload := "consume"
	if cfg.Group != "" {
		workload = fmt.Sprintf("group consume (%d members)", max(cfg.Members, 1))
	}
	return &Result{
		Workload:      workload,
		Records:       n,
		Bytes:         bytes,
		Seconds:       elapsed.Seconds(),
		RecordsPerSec: float64(n) / elapsed.Seconds(),
		MBPerSec:      float64(bytes) / elapsed.Seconds() / 1e6,
		LatencyMS:     lat.summary(),
		Throughput:    tl.perSecond(),
		latencies:     lat,
		timeline:      tl,
	}, nil
}
