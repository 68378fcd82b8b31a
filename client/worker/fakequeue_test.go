package worker_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/client/job"
	"github.com/runnel-dev/runnel/client/worker"
)

// queueLeaseLost is the queue's error for a lease that moved on.
var queueLeaseLost = client.ErrLeaseLost

// fakeQueue is an in-memory queue group over one partition with the
// semantics of client.Queue: a record is leased for visibility, comes back
// when its lease ends unsettled or after a Nack's delay, and is gone once
// acked or rejected. It records every call.
type fakeQueue struct {
	mu         sync.Mutex
	visibility time.Duration
	recs       []*fakeRec
	changed    chan struct{}             // closed and replaced on every change
	calls      []string                  // "ack 0", "nack 0 2s", "reject 0", "extend 0"
	nacks      []time.Duration           // every Nack's delay
	nacksOf    map[int64][]time.Duration // Nack delays by offset
	rejects    []client.DeadLetter
	loseLeases bool // Extend answers the lease is lost
}

type fakeRec struct {
	rec        client.Record
	deliveries int
	leased     bool
	leaseUntil time.Time
	readyAt    time.Time
	settled    bool
}

func newFakeQueue(visibility time.Duration) *fakeQueue {
	return &fakeQueue{visibility: visibility, changed: make(chan struct{})}
}

// add appends a record with value v; its timestamp is now.
func (q *fakeQueue) add(v []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	off := int64(len(q.recs))
	q.recs = append(q.recs, &fakeRec{rec: client.Record{
		Topic: "jobs", Partition: 0, Offset: off, Key: []byte("k"), Value: v, Timestamp: time.Now(),
	}})
	q.changeLocked()
}

// addJob appends a job record.
func (q *fakeQueue) addJob(t *testing.T, j job.Job) {
	t.Helper()
	if j.Version == 0 {
		j.Version = job.Version
	}
	if j.ID == "" {
		j.ID = fmt.Sprintf("%s@%d", j.Name, len(q.recs))
	}
	if j.Attempt == 0 {
		j.Attempt = 1
	}
	v, err := j.Encode()
	if err != nil {
		t.Fatalf("encode job: %v", err)
	}
	q.add(v)
}

func (q *fakeQueue) changeLocked() {
	close(q.changed)
	q.changed = make(chan struct{})
}

func (q *fakeQueue) Next(ctx context.Context) (*worker.Delivery, error) {
	for {
		q.mu.Lock()
		now := time.Now()
		var wake time.Time
		for _, r := range q.recs {
			if r.settled {
				continue
			}
			free := !r.leased || !now.Before(r.leaseUntil)
			if free && !now.Before(r.readyAt) {
				r.deliveries++
				r.leased, r.leaseUntil = true, now.Add(q.visibility)
				d := &worker.Delivery{Record: r.rec, Attempt: r.deliveries, LeaseUntil: r.leaseUntil}
				q.mu.Unlock()
				return d, nil
			}
			at := r.readyAt
			if r.leased && r.leaseUntil.After(at) {
				at = r.leaseUntil
			}
			if wake.IsZero() || at.Before(wake) {
				wake = at
			}
		}
		changed := q.changed
		q.mu.Unlock()
		var (
			t     *time.Timer
			timer <-chan time.Time
		)
		if !wake.IsZero() {
			t = time.NewTimer(wake.Sub(now))
			timer = t.C
		}
		select {
		case <-ctx.Done():
		case <-changed:
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// holderLocked returns d's record if d still holds its lease.
func (q *fakeQueue) holderLocked(d *worker.Delivery) (*fakeRec, error) {
	r := q.recs[d.Offset]
	if r.settled || r.deliveries != d.Attempt || !r.leased {
		return nil, queueLeaseLost
	}
	return r, nil
}

func (q *fakeQueue) Ack(ctx context.Context, d *worker.Delivery) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.calls = append(q.calls, fmt.Sprintf("ack %d", d.Offset))
	r, err := q.holderLocked(d)
	if err != nil {
		return err
	}
	r.settled = true
	q.changeLocked()
	return nil
}

func (q *fakeQueue) Nack(ctx context.Context, d *worker.Delivery, delay time.Duration) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.calls = append(q.calls, fmt.Sprintf("nack %d", d.Offset))
	q.nacks = append(q.nacks, delay)
	if q.nacksOf == nil {
		q.nacksOf = map[int64][]time.Duration{}
	}
	q.nacksOf[d.Offset] = append(q.nacksOf[d.Offset], delay)
	r, err := q.holderLocked(d)
	if err != nil {
		return err
	}
	r.leased, r.readyAt = false, time.Now().Add(delay)
	q.changeLocked()
	return nil
}

func (q *fakeQueue) Extend(ctx context.Context, d *worker.Delivery, by time.Duration) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.calls = append(q.calls, fmt.Sprintf("extend %d", d.Offset))
	r, err := q.holderLocked(d)
	if err != nil {
		return err
	}
	if q.loseLeases {
		r.leased = false
		q.changeLocked()
		return queueLeaseLost
	}
	r.leaseUntil = time.Now().Add(by)
	return nil
}

func (q *fakeQueue) Reject(ctx context.Context, d *worker.Delivery, dl client.DeadLetter) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.calls = append(q.calls, fmt.Sprintf("reject %d", d.Offset))
	r, err := q.holderLocked(d)
	if err != nil {
		return err
	}
	q.rejects = append(q.rejects, dl)
	r.settled = true
	q.changeLocked()
	return nil
}

// waitSettled blocks until every record is acked or rejected, or fails
// the test when ctx ends first.
func (q *fakeQueue) waitSettled(t *testing.T, ctx context.Context) {
	t.Helper()
	for {
		q.mu.Lock()
		done := true
		for _, r := range q.recs {
			done = done && r.settled
		}
		changed := q.changed
		q.mu.Unlock()
		if done {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("records not settled: %v; calls %v", ctx.Err(), q.callList())
		}
	}
}

// callList returns the calls so far, "ack 0 / nack 0 / ...".
func (q *fakeQueue) callList() string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return strings.Join(q.calls, " / ")
}

// fakeProducer collects the records produced.
type fakeProducer struct {
	mu   sync.Mutex
	recs []*client.Record
}

func (p *fakeProducer) ProduceSync(ctx context.Context, recs ...*client.Record) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.recs = append(p.recs, recs...)
	return nil
}

// results decodes the results produced so far.
func (p *fakeProducer) results(t *testing.T) []job.Result {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []job.Result
	for _, r := range p.recs {
		res, err := job.DecodeResult(r.Value)
		if err != nil {
			t.Fatalf("result record: %v", err)
		}
		out = append(out, res)
	}
	return out
}
