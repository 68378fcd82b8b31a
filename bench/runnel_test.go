package bench_test

import (
	"context"
	"errors"
	"testing"

	"github.com/runnel-dev/runnel/bench"
	"github.com/runnel-dev/runnel/bench/drivertest"
	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
)

// openRunnel returns a runnel driver on a new topic of an embedded broker.
func openRunnel(t *testing.T, partitions int) *bench.Runnel {
	t.Helper()
	b, err := broker.Open(t.TempDir(), broker.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	c, err := client.New(t.Context(), client.Dialer(b.DialContext), client.Linger(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.CreateTopic(t.Context(), "d", partitions, 0, nil); err != nil {
		t.Fatal(err)
	}
	return bench.NewRunnel(c, "d")
}

func TestRunnelDriver(t *testing.T) {
	drivertest.Run(t, func(t *testing.T, partitions int) bench.Driver { return openRunnel(t, partitions) })
}

func TestRunnelGroupConsume(t *testing.T) {
	d := openRunnel(t, 3)
	if _, err := bench.Produce(t.Context(), d, bench.ProduceConfig{Records: 900, Size: 20}); err != nil {
		t.Fatal(err)
	}
	res, err := bench.Consume(t.Context(), d, bench.ConsumeConfig{Group: "g", Members: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 900 || res.Bytes != 18000 {
		t.Errorf("group read %d records, %d bytes; want 900 and 18000", res.Records, res.Bytes)
	}
	if res.Workload != "group consume (2 members)" {
		t.Errorf("workload %q", res.Workload)
	}
}

// failing is a driver whose every record fails after ok records.
type failing struct {
	ok    int
	n     int
	err   error
	empty bool
}

func (f *failing) Produce(_ context.Context, _ []byte, done func(error)) {
	f.n++
	if f.n > f.ok {
		done(f.err)
		return
	}
	done(nil)
}

func (f *failing) Lengths(context.Context) ([]int64, error) {
	if f.empty {
		return []int64{0}, nil
	}
	return []int64{1}, nil
}

func (f *failing) Read(context.Context, int, int64, func([]byte)) error { return f.err }

func TestWorkloadsReportDriverErrors(t *testing.T) {
	boom := errors.New("boom")
	_, err := bench.Produce(t.Context(), &failing{ok: 5, err: boom}, bench.ProduceConfig{Records: 100, Size: 1})
	if !errors.Is(err, boom) {
		t.Errorf("produce: %v, want %v", err, boom)
	}
	_, err = bench.Consume(t.Context(), &failing{err: boom}, bench.ConsumeConfig{})
	if !errors.Is(err, boom) {
		t.Errorf("consume: %v, want %v", err, boom)
	}
	_, err = bench.EndToEnd(t.Context(), &failing{err: boom, empty: true}, bench.E2EConfig{Records: 10, Size: 8, Warmup: -1})
	if !errors.Is(err, boom) {
		t.Errorf("e2e: %v, want %v", err, boom)
	}
	_, err = bench.EndToEnd(t.Context(), &failing{err: boom, empty: true}, bench.E2EConfig{Records: 10, Size: 7})
	if err == nil {
		t.Error("e2e with records too short for their send time succeeded")
	}
	_, err = bench.Consume(t.Context(), &failing{err: boom}, bench.ConsumeConfig{Group: "g"})
	if err == nil {
		t.Error("group consume on a driver without groups succeeded")
	}
}

func TestConsumeEmptyTopic(t *testing.T) {
	_, err := bench.Consume(t.Context(), openRunnel(t, 2), bench.ConsumeConfig{})
	if err == nil {
		t.Fatal("consume of an empty topic succeeded")
	}
}
