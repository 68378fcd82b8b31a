package cron

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/client/job"
)

// fakeTarget records what Cron asks of the brokers.
type fakeTarget struct {
	t        *testing.T
	history  map[string]time.Time
	block    chan struct{} // when set, publish waits for it (or ctx)
	started  chan string   // when set, publish sends the id here first
	mu       sync.Mutex
	created  map[string][2]int // topic → partitions, replicas
	parts    int
	nslots   int
	pubs     []pub
	inFlight map[string]int
}

type pub struct {
	id        string
	partition int32
	slot      int
	at        time.Time // when publish was called
	job       job.Job
}

func newFake(t *testing.T) *fakeTarget {
	return &fakeTarget{t: t, created: map[string][2]int{}, inFlight: map[string]int{}, parts: 4}
}

func (f *fakeTarget) ensureTopic(_ context.Context, topic string, partitions, replicas int) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.created[topic] = [2]int{partitions, replicas}
	return f.parts, nil
}

func (f *fakeTarget) lastFires(_ context.Context, _ string, names map[string]bool, _ time.Time) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	for n := range names {
		if t, ok := f.history[n]; ok {
			out[n] = t
		}
	}
	return out, nil
}

func (f *fakeTarget) slots() int { return max(f.nslots, 1) }

func (f *fakeTarget) publish(ctx context.Context, slot int, rec *client.Record) error {
	if slot < 0 || slot >= f.slots() {
		f.t.Errorf("publish through slot %d of %d", slot, f.slots())
	}
	j, err := job.Decode(rec.Value)
	if err != nil {
		f.t.Errorf("publish of a bad job record: %v", err)
		return err
	}
	var id string
	for _, h := range rec.Headers {
		if h.Key == job.MsgIDHeader {
			id = string(h.Value)
		}
	}
	if id != j.ID || string(rec.Key) != j.Name {
		f.t.Errorf("record key %q, msg id %q, for job %q id %q", rec.Key, id, j.Name, j.ID)
	}
	lane := fmt.Sprintf("%s/%d/%d", rec.Topic, rec.Partition, slot)
	f.mu.Lock()
	f.inFlight[lane]++
	if f.inFlight[lane] > 1 {
		f.t.Errorf("two publishes at once on %s", lane)
	}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inFlight[lane]--
		f.mu.Unlock()
	}()
	if f.started != nil {
		f.started <- id
	}
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pubs = append(f.pubs, pub{id: id, partition: rec.Partition, slot: slot, at: time.Now(), job: j})
	return nil
}

func (f *fakeTarget) ids() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, p := range f.pubs {
		out = append(out, p.id)
	}
	return out
}

func mustJobs(t *testing.T, yaml string) []Job {
	t.Helper()
	jobs, err := Parse("jobs.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return jobs
}

// runFor runs cr for d of (fake) time and then stops it.
func runFor(t *testing.T, cr *Cron, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	if err := cr.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// ids returns the ids of name's fires at start+offsets (seconds).
func ids(name string, start time.Time, offsets ...int) []string {
	var out []string
	for _, o := range offsets {
		out = append(out, job.FireID(name, start.Add(time.Duration(o)*time.Second)))
	}
	return out
}

func seq(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func TestFiresOnTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now().UTC() // 2000-01-01T00:00:00Z in the bubble
		f := newFake(t)
		reg := prometheus.NewRegistry()
		cr, err := newCron(f, mustJobs(t, `
jobs:
  - {name: every-second, schedule: "@every 1s", topic: jobs, command: "echo 1", max_attempts: 3, timeout: 2s}
  - {name: every-5s, schedule: "*/5 * * * * *", topic: jobs, payload: {x: 1}}
  - {name: hourly, schedule: "@hourly", topic: other, command: "true", partitions: 2}
`), Options{Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		runFor(t, cr, 10500*time.Millisecond)

		var want []string
		for s := 1; s <= 10; s++ {
			want = append(want, ids("every-second", start, s)...)
			if s%5 == 0 {
				want = append(want, ids("every-5s", start, s)...)
			}
		}
		got := f.ids()
		if diff := cmp.Diff(sorted(want), sorted(got)); diff != "" {
			t.Errorf("published (-want +got):\n%s", diff)
		}
		for _, p := range f.pubs {
			// In the bubble, time moves only when everything waits: a fire
			// is published at exactly its scheduled time.
			if !p.at.Equal(p.job.ScheduledAt) || !p.job.PublishedAt.Equal(p.job.ScheduledAt) {
				t.Errorf("%s published at %v", p.id, p.at)
			}
			if p.job.Attempt != 1 {
				t.Errorf("%s has attempt %d", p.id, p.job.Attempt)
			}
		}
		if p := f.pubs[0]; p.job.MaxAttempts != 3 || p.job.TimeoutMS != 2000 || p.job.Command != "echo 1" {
			t.Errorf("first job = %+v", p.job)
		}
		if diff := cmp.Diff(map[string][2]int{"jobs": {1, 0}, "other": {2, 0}}, f.created); diff != "" {
			t.Errorf("topics created (-want +got):\n%s", diff)
		}
		if got := value(t, cr.metrics.publishes.WithLabelValues("every-second", ResultOK)); got != 10 {
			t.Errorf("publishes ok of every-second = %v, want 10", got)
		}
		if got := value(t, cr.metrics.jobs); got != 3 {
			t.Errorf("runnel_cron_jobs = %v, want 3", got)
		}
		if got := value(t, cr.metrics.nextFire.WithLabelValues("hourly")); got != float64(start.Add(time.Hour).Unix()) {
			t.Errorf("next fire of hourly = %v, want %v", got, start.Add(time.Hour).Unix())
		}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var lagCount uint64
		for _, mf := range mfs {
			if mf.GetName() == "runnel_cron_schedule_lag_seconds" {
				lagCount = mf.GetMetric()[0].GetHistogram().GetSampleCount()
			}
		}
		if lagCount != 12 {
			t.Errorf("runnel_cron_schedule_lag_seconds counted %d fires, want 12", lagCount)
		}
	})
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestMissedAtStart(t *testing.T) {
	for _, tc := range []struct {
		missed  Missed
		want    []int // offsets in minutes of the fires published at start
		skipped float64
	}{
		{MissedSkip, []int{0}, 9},
		{MissedOnce, []int{-1, 0}, 8},
		{MissedCatchUp, []int{-9, -8, -7, -6, -5, -4, -3, -2, -1, 0}, 0},
	} {
		t.Run(string(tc.missed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now().UTC()
				f := newFake(t)
				// The last fire published was 10 minutes ago: 9 were
				// missed, and the one at start is on time.
				f.history = map[string]time.Time{"m": start.Add(-10 * time.Minute)}
				cr, err := newCron(f, mustJobs(t, `
jobs:
  - {name: m, schedule: "@every 1m", topic: jobs, command: "true", missed: `+string(tc.missed)+`}
`), Options{})
				if err != nil {
					t.Fatal(err)
				}
				runFor(t, cr, 30*time.Second)
				var want []string
				for _, m := range tc.want {
					want = append(want, job.FireID("m", start.Add(time.Duration(m)*time.Minute)))
				}
				if diff := cmp.Diff(want, f.ids()); diff != "" {
					t.Errorf("published (-want +got):\n%s", diff)
				}
				if got := value(t, cr.metrics.publishes.WithLabelValues("m", ResultSkipped)); got != tc.skipped {
					t.Errorf("skipped = %v, want %v", got, tc.skipped)
				}
			})
		})
	}
}

func TestCatchUpIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now().UTC()
		f := newFake(t)
		f.history = map[string]time.Time{"s": start.Add(-3000 * time.Second)}
		cr, err := newCron(f, mustJobs(t, `
jobs:
  - {name: s, schedule: "@every 1s", topic: jobs, command: "true", missed: catchup}
`), Options{})
		if err != nil {
			t.Fatal(err)
		}
		runFor(t, cr, 500*time.Millisecond)
		// Fires -5s..0 are on time (Grace); of the 2994 older ones the
		// latest MaxCatchUp are published, oldest first.
		want := ids("s", start, seq(-5-MaxCatchUp, 0)...)
		if diff := cmp.Diff(want, f.ids()); diff != "" {
			t.Errorf("published (-want +got):\n%s", diff)
		}
		if got := value(t, cr.metrics.publishes.WithLabelValues("s", ResultSkipped)); got != 2999-5-MaxCatchUp {
			t.Errorf("skipped = %v, want %v", got, 2999-5-MaxCatchUp)
		}
	})
}

// jumpClock is the bubble's clock moved forward by a settable offset, as
// when the process was stopped (SIGSTOP, a suspended VM) for a while.
type jumpClock struct{ offset atomic.Int64 }

func (c *jumpClock) Now() time.Time                         { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *jumpClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

func TestFellBehind(t *testing.T) {
	for _, tc := range []struct {
		missed Missed
		want   []int
	}{
		// Stopped from 3.5s to 63.5s: the fires at 4..63 are late. Those
		// at 59..63 are within Grace, so on time under every policy.
		{MissedSkip, append(seq(1, 3), seq(59, 66)...)},
		{MissedOnce, append(seq(1, 3), seq(58, 66)...)},
		{MissedCatchUp, seq(1, 66)},
	} {
		t.Run(string(tc.missed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now().UTC()
				f := newFake(t)
				clock := &jumpClock{}
				cr, err := newCron(f, mustJobs(t, `
jobs:
  - {name: s, schedule: "@every 1s", topic: jobs, command: "true", missed: `+string(tc.missed)+`}
`), Options{Clock: clock})
				if err != nil {
					t.Fatal(err)
				}
				time.AfterFunc(3500*time.Millisecond, func() { clock.offset.Store(int64(time.Minute)) })
				runFor(t, cr, 6500*time.Millisecond) // 66.5s by the jumped clock
				if diff := cmp.Diff(ids("s", start, tc.want...), f.ids()); diff != "" {
					t.Errorf("published (-want +got):\n%s", diff)
				}
			})
		})
	}
}

func TestShutdownWaitsForInFlightPublish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		f.block = make(chan struct{})
		f.started = make(chan string, 10)
		cr, err := newCron(f, mustJobs(t, `
jobs:
  - {name: s, schedule: "@every 1s", topic: jobs, command: "true"}
`), Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- cr.Run(ctx) }()
		<-f.started // the fire at 1s is being published
		cancel()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Run returned (%v) before its publish finished", err)
		default:
		}
		close(f.block)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got := len(f.ids()); got != 1 {
			t.Errorf("published %d, want 1", got)
		}
	})
}

func TestShutdownGivesUpAfterDrainTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		f.block = make(chan struct{}) // never closed
		f.started = make(chan string, 10)
		reg := prometheus.NewRegistry()
		cr, err := newCron(f, mustJobs(t, `
jobs:
  - {name: s, schedule: "@every 1s", topic: jobs, command: "true"}
`), Options{DrainTimeout: 3 * time.Second, Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- cr.Run(ctx) }()
		<-f.started
		cancel()
		stopped := time.Now()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(stopped); waited != 3*time.Second {
			t.Errorf("Run returned %v after its context ended, want the drain timeout, 3s", waited)
		}
		if got := value(t, cr.metrics.publishes.WithLabelValues("s", ResultError)); got != 1 {
			t.Errorf("errors = %v, want 1", got)
		}
	})
}

func TestSamePartitionPublishesOneAtATimePerClient(t *testing.T) {
	for _, slots := range []int{1, 3} {
		t.Run(fmt.Sprint(slots, " clients"), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFake(t)
				f.parts = 1 // every job on partition 0
				f.nslots = slots
				var b strings.Builder
				b.WriteString("jobs:\n")
				for i := range 20 {
					fmt.Fprintf(&b, "  - {name: j%d, schedule: \"@every 1s\", topic: jobs, command: \"true\"}\n", i)
				}
				cr, err := newCron(f, mustJobs(t, b.String()), Options{})
				if err != nil {
					t.Fatal(err)
				}
				runFor(t, cr, 3500*time.Millisecond)
				// fakeTarget.publish fails the test on two publishes at
				// once through one client to one partition.
				if got := len(f.ids()); got != 60 {
					t.Errorf("published %d, want 60", got)
				}
				used := map[int]bool{}
				jobSlot := map[string]int{}
				for _, p := range f.pubs {
					used[p.slot] = true
					if s, ok := jobSlot[p.job.Name]; ok && s != p.slot {
						t.Errorf("job %s published through clients %d and %d", p.job.Name, s, p.slot)
					}
					jobSlot[p.job.Name] = p.slot
				}
				if len(used) != slots {
					t.Errorf("published through %d clients, want %d", len(used), slots)
				}
			})
		})
	}
}

func TestRunOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cr, err := newCron(newFake(t), mustJobs(t, "jobs: [{name: a, schedule: \"@hourly\", topic: t, command: x}]"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		runFor(t, cr, time.Second)
		if err := cr.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "called before") {
			t.Errorf("second Run = %v, want an error", err)
		}
	})
}

func TestOptionsAndJobsChecked(t *testing.T) {
	good := []Job{{Name: "a", Schedule: "@hourly", Topic: "t", Command: "true"}}
	for _, tc := range []struct {
		jobs []Job
		opts Options
		want string
	}{
		{nil, Options{}, "no jobs"},
		{[]Job{{Name: "a", Schedule: "nope", Topic: "t", Command: "x"}}, Options{}, `job "a"`},
		{append(good, good[0]), Options{}, "used twice"},
		{good, Options{Partitions: -1}, "Partitions -1"},
		{good, Options{Grace: -time.Second}, "must not be negative"},
	} {
		_, err := newCron(newFake(t), tc.jobs, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("newCron = %v, want an error containing %q", err, tc.want)
		}
	}
}

// value returns the value of a counter or gauge.
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}
