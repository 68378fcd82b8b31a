package cron

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/client/job"
)

// Clock tells the time and waits. The zero Options use the system clock;
// tests run it inside a testing/synctest bubble, where its time is fake.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Options configure a Cron. The zero value works.
type Options struct {
	// Partitions is the partition count of a topic Run creates for a job
	// that does not set its own. Default 1.
	Partitions int
	// Replicas is the replication factor of the topics Run creates; 0 is
	// the broker's default.
	Replicas int
	// Grace is how late a fire may be and still count as on time; a later
	// one is missed and handled by the job's Missed policy. Default 5s.
	Grace time.Duration
	// Lookback is how far back Run reads a job's topic at start for the
	// job's last published fire. A fire older than that is not known, and
	// missed fires before it are not caught up. Default 24h.
	Lookback time.Duration
	// DrainTimeout bounds how long Run waits, once its context ends, for
	// the publishes already due. Default 10s.
	DrainTimeout time.Duration
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
	// ExtraClients are more clients to publish through, connected to the
	// same cluster. A client sends the records of one partition one at a
	// time (each alone in its batch, which the dedupe needs), so with many
	// jobs on few partitions, fires due at the same time queue behind each
	// other; each extra client adds a parallel publisher per partition.
	// A job is always published through the same client.
	ExtraClients []*client.Client
	// Logger gets what happens; nil discards it.
	Logger *slog.Logger
	// Clock is the time source; nil is the system clock.
	Clock Clock
}

func (o *Options) ensureDefaults() error {
	if o.Partitions == 0 {
		o.Partitions = 1
	}
	if o.Grace == 0 {
		o.Grace = 5 * time.Second
	}
	if o.Lookback == 0 {
		o.Lookback = 24 * time.Hour
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = systemClock{}
	}
	switch {
	case o.Partitions < 0:
		return fmt.Errorf("cron: Partitions %d: use 1 or more", o.Partitions)
	case o.Replicas < 0:
		return fmt.Errorf("cron: Replicas %d: use 1 or more, or 0 for the broker's default", o.Replicas)
	case o.Grace < 0 || o.Lookback < 0 || o.DrainTimeout < 0:
		return errors.New("cron: Grace, Lookback and DrainTimeout must not be negative")
	}
	return nil
}

// target is what Cron needs of the brokers: the client, or a fake in tests.
type target interface {
	// ensureTopic creates topic with partitions unless it exists, and
	// returns its partition count once the publishing clients know it.
	ensureTopic(ctx context.Context, topic string, partitions, replicas int) (int, error)
	// lastFires returns, for each job named in names, the latest scheduled
	// time among its records in topic written since since.
	lastFires(ctx context.Context, topic string, names map[string]bool, since time.Time) (map[string]time.Time, error)
	// publish produces rec, alone in its batch, through producer slot
	// (in [0, slots())) and waits for its ack.
	publish(ctx context.Context, slot int, rec *client.Record) error
	// slots returns how many producers publish may use at once.
	slots() int
}

// Cron publishes jobs on their schedules. See the package documentation
// for the guarantees.
type Cron struct {
	ran     atomic.Bool
	jobs    []*entry
	target  target
	opts    Options
	metrics *metrics
}

// entry is a job and its schedule state, owned by Run's loop.
type entry struct {
	Job
	partition int32
	// slot is the producer the job's fires go through.
	slot int
	// next is the next fire time not handled yet.
	next time.Time
}

// New returns a Cron that publishes jobs through c. c must acknowledge with
// client.AcksAll (its default) and use the default key partitioner or
// ManualPartitioner; it should not produce to the jobs' topics for anyone
// else, as Cron sends each job record alone in its batch, which the
// broker's dedupe needs. Jobs are checked with Job.Check.
func New(c *client.Client, jobs []Job, opts Options) (*Cron, error) {
	return newCron(clientTarget{append([]*client.Client{c}, opts.ExtraClients...)}, jobs, opts)
}

func newCron(t target, jobs []Job, opts Options) (*Cron, error) {
	if err := opts.ensureDefaults(); err != nil {
		return nil, err
	}
	if len(jobs) == 0 {
		return nil, errors.New("cron: no jobs")
	}
	cr := &Cron{target: t, opts: opts, metrics: newMetrics()}
	seen := map[string]bool{}
	for _, j := range jobs {
		if err := j.Check(); err != nil {
			return nil, fmt.Errorf("cron: job %q: %w", j.Name, err)
		}
		if seen[j.Name] {
			return nil, fmt.Errorf("cron: job name %q is used twice; names must be unique", j.Name)
		}
		seen[j.Name] = true
		cr.jobs = append(cr.jobs, &entry{Job: j, slot: len(cr.jobs) % t.slots()})
	}
	if opts.Registerer != nil {
		if err := cr.metrics.register(opts.Registerer); err != nil {
			return nil, fmt.Errorf("cron: register metrics: %w", err)
		}
	}
	cr.metrics.jobs.Set(float64(len(cr.jobs)))
	return cr, nil
}

// Run creates the jobs' topics that do not exist, reads back each job's
// last published fire, and then publishes each fire on time until ctx ends.
// It then waits for the publishes already due (at most DrainTimeout) and
// returns nil. It fails at start when a topic cannot be created or read.
// Run may be called once.
func (cr *Cron) Run(ctx context.Context) error {
	if cr.ran.Swap(true) {
		return errors.New("cron: Run was called before; make a new Cron with New")
	}
	if err := cr.start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	// Publishes outlive ctx by at most DrainTimeout.
	pubCtx, cancelPub := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelPub()
	lanes := newLanes(pubCtx, cr)
	cr.loop(ctx, lanes)
	timer := time.AfterFunc(cr.opts.DrainTimeout, func() {
		cr.opts.Logger.Warn("cron: publishes still running after the drain timeout; abandoning them", "timeout", cr.opts.DrainTimeout)
		cancelPub()
	})
	defer timer.Stop()
	lanes.close()
	return nil
}

// start creates topics and sets each job's last and next fire.
func (cr *Cron) start(ctx context.Context) error {
	now := cr.opts.Clock.Now().UTC()
	byTopic := map[string][]*entry{}
	var topics []string
	for _, e := range cr.jobs {
		if byTopic[e.Topic] == nil {
			topics = append(topics, e.Topic)
		}
		byTopic[e.Topic] = append(byTopic[e.Topic], e)
	}
	for _, topic := range topics {
		es := byTopic[topic]
		parts := cr.opts.Partitions
		names := map[string]bool{}
		for _, e := range es {
			if e.Partitions > 0 {
				parts = e.Partitions
			}
			names[e.Name] = true
		}
		n, err := cr.target.ensureTopic(ctx, topic, parts, cr.opts.Replicas)
		if err != nil {
			return fmt.Errorf("cron: topic %s: %w", topic, err)
		}
		last, err := cr.target.lastFires(ctx, topic, names, now.Add(-cr.opts.Lookback))
		if err != nil {
			return fmt.Errorf("cron: read the last fires from topic %s: %w", topic, err)
		}
		for _, e := range es {
			e.partition = int32(client.KeyPartition([]byte(e.Name), n))
			// A job without a published fire starts now; one with a
			// last fire goes on from it, and the policy handles what
			// was missed since.
			from := now
			if t, ok := last[e.Name]; ok {
				from = t
				cr.opts.Logger.Info("cron: job's last published fire", "job", e.Name, "scheduled_at", t)
			}
			e.next = e.Job.Next(from)
			cr.setNext(e)
		}
	}
	return nil
}

func (cr *Cron) setNext(e *entry) {
	if e.next.IsZero() {
		cr.metrics.nextFire.DeleteLabelValues(e.Name)
		return
	}
	cr.metrics.nextFire.WithLabelValues(e.Name).Set(float64(e.next.UnixNano()) / 1e9)
}

// maxWait bounds one wait of the loop, so that a change of the wall clock
// is noticed within it.
const maxWait = time.Minute

// loop fires the jobs until ctx ends. It is the only user of the entries.
func (cr *Cron) loop(ctx context.Context, lanes *lanes) {
	clock := cr.opts.Clock
	for {
		now := clock.Now().UTC()
		var wake time.Time
		for _, e := range cr.jobs {
			if e.next.IsZero() {
				continue
			}
			if !e.next.After(now) {
				cr.fire(e, now, lanes)
			}
			if !e.next.IsZero() && (wake.IsZero() || e.next.Before(wake)) {
				wake = e.next
			}
		}
		wait := maxWait
		if !wake.IsZero() {
			wait = min(wake.Sub(clock.Now()), maxWait)
		}
		if wait <= 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-clock.After(wait):
		}
	}
}

// maxDue bounds the missed fire times enumerated for one job at once.
const maxDue = 1_000_000

// fire hands the due fires of e to the lanes, applying e's policy to the
// missed ones, and moves e past now.
func (cr *Cron) fire(e *entry, now time.Time, lanes *lanes) {
	var missed []time.Time
	var onTime []time.Time
	n := 0
	t := e.next
	for ; !t.IsZero() && !t.After(now); t = e.Job.Next(t) {
		if n++; n > maxDue {
			// Jump: far too many to count one by one.
			t = e.Job.Next(now)
			break
		}
		if now.Sub(t) > cr.opts.Grace {
			missed = append(missed, t)
			if len(missed) > MaxCatchUp {
				missed = missed[1:]
			}
		} else {
			onTime = append(onTime, t)
		}
	}
	dropped := n - len(missed) - len(onTime)
	e.next = t
	cr.setNext(e)

	var late []time.Time
	switch {
	case len(missed) == 0:
	case e.Missed == MissedCatchUp:
		late = missed
		if dropped > 0 {
			cr.opts.Logger.Warn("cron: too many missed fires to catch up; publishing the latest ones only",
				"job", e.Name, "missed", n-len(onTime), "publishing", len(missed), "max", MaxCatchUp)
		}
	case e.Missed == MissedOnce:
		late = missed[len(missed)-1:]
		dropped += len(missed) - 1
	default:
		dropped += len(missed)
	}
	if dropped > 0 {
		cr.metrics.publishes.WithLabelValues(e.Name, ResultSkipped).Add(float64(dropped))
		cr.opts.Logger.Info("cron: skipped missed fires", "job", e.Name, "skipped", dropped, "policy", e.Missed)
	}
	for _, at := range late {
		lanes.add(fireReq{e: &e.Job, partition: e.partition, slot: e.slot, at: at, late: true})
	}
	for _, at := range onTime {
		lanes.add(fireReq{e: &e.Job, partition: e.partition, slot: e.slot, at: at})
	}
}

// Fire is one scheduled run of a job.
type Fire struct {
	Job *Job
	// At is the scheduled time, in UTC.
	At time.Time
}

// ID returns the fire's job ID and dedupe key.
func (f Fire) ID() string { return job.FireID(f.Job.Name, f.At) }

// Upcoming returns the next count fires of each job after from, sorted by
// time (then by job name). The jobs must have passed Check.
func Upcoming(jobs []Job, from time.Time, count int) []Fire {
	var out []Fire
	for i := range jobs {
		j := &jobs[i]
		t := from
		for range count {
			t = j.Next(t)
			if t.IsZero() {
				break
			}
			out = append(out, Fire{Job: j, At: t})
		}
	}
	slices.SortStableFunc(out, func(a, b Fire) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		switch {
		case a.Job.Name < b.Job.Name:
			return -1
		case a.Job.Name > b.Job.Name:
			return 1
		}
		return 0
	})
	return out
}

// record builds the record of a fire published at now.
func record(j *Job, at, now time.Time) (*client.Record, error) {
	v := job.Job{
		Version:     job.Version,
		ID:          job.FireID(j.Name, at),
		Name:        j.Name,
		Command:     j.Command,
		Payload:     j.Payload,
		ScheduledAt: at.UTC(),
		PublishedAt: now.UTC(),
		Attempt:     1,
		MaxAttempts: j.MaxAttempts,
		TimeoutMS:   j.Timeout.Milliseconds(),
	}
	b, err := v.Encode()
	if err != nil {
		return nil, err
	}
	return &client.Record{
		Topic:   j.Topic,
		Key:     []byte(j.Name),
		Value:   b,
		Headers: []client.Header{{Key: job.MsgIDHeader, Value: []byte(v.ID)}},
	}, nil
}
