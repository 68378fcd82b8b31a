// Package drivertest is the conformance suite for bench.Driver: each
// implementation runs it, so the workloads measure every system the same
// way.
package drivertest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/bench"
)

// Open returns a driver bound to a new, empty topic of the given partition
// count. It registers its own cleanup with t.
type Open func(t *testing.T, partitions int) bench.Driver

// Run checks that open's drivers acknowledge every record exactly once,
// count what each partition holds, read each partition back in full, and
// stop reading when the context ends.
func Run(t *testing.T, open Open) {
	t.Run("ProduceThenRead", func(t *testing.T) { produceThenRead(t, open) })
	t.Run("ReadStopsWithContext", func(t *testing.T) { readStops(t, open) })
	t.Run("ProduceAfterCancel", func(t *testing.T) { produceAfterCancel(t, open) })
	t.Run("Workloads", func(t *testing.T) { workloads(t, open) })
	t.Run("EndToEnd", func(t *testing.T) { endToEnd(t, open) })
}

func produceThenRead(t *testing.T, open Open) {
	const partitions, records = 3, 600
	d := open(t, partitions)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		calls int
		errs  []error
	)
	wg.Add(records)
	for i := range records {
		value := make([]byte, 10+i%7)
		d.Produce(ctx, value, func(err error) {
			mu.Lock()
			calls++
			if err != nil {
				errs = append(errs, err)
			}
			mu.Unlock()
			wg.Done()
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d records failed, first: %v", len(errs), records, errs[0])
	}
	if calls != records {
		t.Fatalf("done called %d times for %d records", calls, records)
	}
	lengths, err := d.Lengths(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(lengths) != partitions {
		t.Fatalf("lengths %v: want %d partitions", lengths, partitions)
	}
	var total int64
	for _, n := range lengths {
		total += n
	}
	if total != records {
		t.Fatalf("partitions hold %v, %d in all; want %d", lengths, total, records)
	}
	var read, bytes int64
	for p, n := range lengths {
		var got int64
		err := d.Read(ctx, p, n, func(value []byte) {
			got++
			bytes += int64(len(value))
		})
		if err != nil {
			t.Fatalf("read partition %d: %v", p, err)
		}
		if got != n {
			t.Errorf("partition %d: read %d records, want %d", p, got, n)
		}
		read += got
	}
	var want int64
	for i := range records {
		want += int64(10 + i%7)
	}
	if read != records || bytes != want {
		t.Errorf("read %d records of %d bytes, want %d of %d", read, bytes, records, want)
	}
}

func readStops(t *testing.T, open Open) {
	d := open(t, 1)
	done := make(chan error, 1)
	d.Produce(t.Context(), []byte("one"), func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	var got int
	err := d.Read(ctx, 0, 2, func([]byte) { got++ })
	if err == nil {
		t.Fatal("read of 2 records from a partition of 1 returned no error")
	}
	if got != 1 {
		t.Errorf("read %d records before the context ended, want 1", got)
	}
}

func produceAfterCancel(t *testing.T, open Open) {
	d := open(t, 1)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	done := make(chan error, 2)
	d.Produce(ctx, []byte("late"), func(err error) { done <- err })
	select {
	case err := <-done:
		if err == nil {
			// A driver may have sent it before looking at ctx; that is
			// allowed, as long as done is called.
			t.Log("record produced with a canceled context")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("done not called for a record produced with a canceled context")
	}
}

func workloads(t *testing.T, open Open) {
	d := open(t, 2)
	for _, rate := range []float64{0, 5000} {
		res, err := bench.Produce(t.Context(), d, bench.ProduceConfig{Records: 500, Size: 50, Rate: rate})
		if err != nil {
			t.Fatalf("produce at rate %v: %v", rate, err)
		}
		if res.Records != 500 || res.Bytes != 25000 {
			t.Errorf("produce at rate %v: %d records, %d bytes; want 500 and 25000", rate, res.Records, res.Bytes)
		}
	}
	res, err := bench.Consume(t.Context(), d, bench.ConsumeConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 1000 || res.Bytes != 50000 {
		t.Errorf("consume: %d records, %d bytes; want 1000 and 50000", res.Records, res.Bytes)
	}
	l := res.LatencyMS
	if !(l.P50 > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
		t.Errorf("consume percentiles out of order: %+v", l)
	}
}

func endToEnd(t *testing.T, open Open) {
	d := open(t, 2)
	for _, rate := range []float64{0, 5000} {
		res, err := bench.EndToEnd(t.Context(), d, bench.E2EConfig{Records: 400, Size: 64, Rate: rate, Warmup: 20})
		if rate == 0 {
			// The first run leaves records in the topic, so the second
			// must refuse it.
			if err != nil {
				t.Fatalf("e2e: %v", err)
			}
			if res.Workload != "e2e" || res.Records != 400 || res.Bytes != 400*64 {
				t.Errorf("e2e: workload %q, %d records, %d bytes; want e2e, 400 and %d", res.Workload, res.Records, res.Bytes, 400*64)
			}
			l := res.LatencyMS
			if !(l.P50 > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
				t.Errorf("e2e percentiles out of order: %+v", l)
			}
			continue
		}
		if err == nil {
			t.Error("e2e on a topic that holds records succeeded")
		}
	}
	fresh := open(t, 1)
	res, err := bench.EndToEnd(t.Context(), fresh, bench.E2EConfig{Records: 300, Size: 8, Rate: 5000, Warmup: -1})
	if err != nil {
		t.Fatalf("e2e at 5000 records/s: %v", err)
	}
	if res.Records != 300 || res.OfferedRate != 5000 {
		t.Errorf("e2e at 5000 records/s: %d records, offered %v", res.Records, res.OfferedRate)
	}
}
