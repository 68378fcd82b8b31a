package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// E2EConfig is an end-to-end workload: records produced into an empty
// topic while one reader per partition, started before the first record
// was sent, reads them.
type E2EConfig struct {
	// Records is how many records to measure.
	Records int
	// Size is each record's value size in bytes, at least 8: a record
	// carries its due time in its first 8 bytes.
	Size int
	// Rate is the offered load in records per second. With a rate the
	// load is open loop and a record's latency counts from its due time
	// (start + i/Rate) to the moment a reader has it; 0 sends as fast as
	// the driver takes records and counts from the Produce call.
	Rate float64
	// Warmup is how many records are sent and read, unmeasured, before
	// the measured ones, so that the readers are connected and reading
	// when the measurement starts. 0 means 1000; -1 means none.
	Warmup int
	// Progress, if set, is called about once a second with the measured
	// records read so far.
	Progress func(read int64, elapsed time.Duration)
}

// e2eHeader is the size of the due time at the start of each value.
const e2eHeader = 8

// warmupMark is the due time written into warm-up records.
const warmupMark = math.MinInt64

// EndToEnd runs an end-to-end workload on d, whose topic must be empty, and
// reports the rate at which the readers received the measured records and
// the latency from each record's due time to its receipt by a reader.
// Every measured record must be read; the run ends with an error if a
// reader or a produce fails, or ctx ends first.
func EndToEnd(ctx context.Context, d Driver, cfg E2EConfig) (*Result, error) {
	switch {
	case cfg.Records <= 0:
		return nil, fmt.Errorf("records %d: give a positive count", cfg.Records)
	case cfg.Size < e2eHeader:
		return nil, fmt.Errorf("size %d: an end-to-end record carries its send time in %d bytes; give %d or more", cfg.Size, e2eHeader, e2eHeader)
	case cfg.Rate < 0:
		return nil, fmt.Errorf("rate %v: give a positive rate, or 0 for as fast as possible", cfg.Rate)
	}
	warmup := cfg.Warmup
	switch {
	case warmup == 0:
		warmup = 1000
	case warmup < 0:
		warmup = 0
	}
	lengths, err := d.Lengths(ctx)
	if err != nil {
		return nil, err
	}
	for p, n := range lengths {
		if n > 0 {
			return nil, fmt.Errorf("partition %d holds %d records: the end-to-end workload needs an empty topic", p, n)
		}
	}
	if len(lengths) == 0 {
		return nil, errors.New("the topic has no partitions")
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Due times travel as nanoseconds since epoch on this process's
	// monotonic clock: the readers run in the same process.
	epoch := time.Now()
	lat := newLatencies()
	tl := newTimeline()
	var (
		warmRead, read, size atomic.Int64
		start                atomic.Pointer[time.Time]
		last                 atomic.Int64 // nanoseconds since epoch of the last read
		warmDone             = make(chan struct{})
		allRead              = make(chan struct{})
	)
	if warmup == 0 {
		close(warmDone)
	}
	onValue := func(value []byte) {
		if len(value) < e2eHeader {
			cancel(fmt.Errorf("read a record of %d bytes, too short for an end-to-end record", len(value)))
			return
		}
		due := int64(binary.LittleEndian.Uint64(value))
		if due == warmupMark {
			if warmRead.Add(1) == int64(warmup) {
				close(warmDone)
			}
			return
		}
		now := time.Since(epoch)
		lat.record(now - time.Duration(due))
		if s := start.Load(); s != nil {
			tl.add(now - s.Sub(epoch))
		}
		size.Add(int64(len(value)))
		// Readers of different partitions race here: keep the latest.
		for old := last.Load(); int64(now) > old && !last.CompareAndSwap(old, int64(now)); old = last.Load() {
		}
		if read.Add(1) == int64(cfg.Records) {
			close(allRead)
		}
	}
	var wg sync.WaitGroup
	var finished atomic.Bool
	for p := range lengths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.Read(ctx, p, math.MaxInt64, onValue); err != nil && !finished.Load() {
				cancel(fmt.Errorf("read partition %d: %w", p, err))
			}
		}()
	}
	defer func() {
		finished.Store(true)
		cancel(nil)
		wg.Wait()
	}()

	// Random values, so that records differ; each record gets its own
	// copy, since its first bytes are its own due time.
	const pool = 64
	values := make([][]byte, pool)
	for i := range values {
		values[i] = make([]byte, cfg.Size)
		for j := range values[i] {
			values[i][j] = byte(rand.Uint32())
		}
	}
	stamped := func(i int, due int64) []byte {
		v := append([]byte(nil), values[i%pool]...)
		binary.LittleEndian.PutUint64(v, uint64(due))
		return v
	}

	if warmup > 0 {
		err := send(ctx, d, ProduceConfig{Records: warmup}, time.Now(),
			func(i int, _ time.Time) []byte { return stamped(i, warmupMark) },
			func(time.Time, time.Time) {})
		if err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
		select {
		case <-warmDone:
		case <-ctx.Done():
			return nil, fmt.Errorf("warm-up: after %d of %d records read: %w", warmRead.Load(), warmup, context.Cause(ctx))
		}
	}

	t0 := time.Now()
	start.Store(&t0)
	stop := progress(cfg.Progress, &read, t0)
	defer stop()
	err = send(ctx, d, ProduceConfig{Records: cfg.Records, Rate: cfg.Rate}, t0,
		func(i int, due time.Time) []byte { return stamped(i, int64(due.Sub(epoch))) },
		func(time.Time, time.Time) {})
	if err != nil {
		return nil, fmt.Errorf("after %d of %d records read: %w", read.Load(), cfg.Records, err)
	}
	select {
	case <-allRead:
	case <-ctx.Done():
		return nil, fmt.Errorf("after %d of %d records read: %w", read.Load(), cfg.Records, context.Cause(ctx))
	}
	elapsed := time.Duration(last.Load()) - t0.Sub(epoch)
	n := read.Load()
	return &Result{
		Workload:      "e2e",
		Records:       n,
		Bytes:         size.Load(),
		Seconds:       elapsed.Seconds(),
		RecordsPerSec: float64(n) / elapsed.Seconds(),
		MBPerSec:      float64(size.Load()) / elapsed.Seconds() / 1e6,
		OfferedRate:   cfg.Rate,
		LatencyMS:     lat.summary(),
		Throughput:    tl.perSecond(),
		latencies:     lat,
		timeline:      tl,
	}, nil
}
