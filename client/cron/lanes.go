package cron

import (
	"context"
	"sync"
	"time"
)

// fireReq is one fire to publish.
type fireReq struct {
	e         *Job
	partition int32
	slot      int
	at        time.Time
	// late marks a missed fire published by policy; its lag is not
	// observed.
	late bool
}

// lanes publish fires, one lane per topic partition and producer slot. A
// lane publishes one record at a time, so that each record is alone in its
// batch: the broker deduplicates a batch by message id only when every id
// in it is known, so a batch mixing a fire another instance published with
// a new one would write the first again. Lanes run in parallel: those of
// one partition use different clients, whose batches are their own.
type lanes struct {
	ctx context.Context
	cr  *Cron
	wg  sync.WaitGroup

	mu     sync.Mutex
	lanes  map[laneKey]*lane
	closed bool
}

type laneKey struct {
	topic     string
	partition int32
	slot      int
}

// lane is the queue of one partition; its goroutine runs while it has
// fires to publish.
type lane struct {
	queue   []fireReq
	running bool
}

func newLanes(ctx context.Context, cr *Cron) *lanes {
	return &lanes{ctx: ctx, cr: cr, lanes: map[laneKey]*lane{}}
}

// add queues f on its partition's lane.
func (ls *lanes) add(f fireReq) {
	k := laneKey{f.e.Topic, f.partition, f.slot}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.closed {
		return
	}
	l := ls.lanes[k]
	if l == nil {
		l = &lane{}
		ls.lanes[k] = l
	}
	l.queue = append(l.queue, f)
	if !l.running {
		l.running = true
		ls.wg.Add(1)
		go ls.run(l)
	}
}

// run publishes l's queue until it is empty.
func (ls *lanes) run(l *lane) {
	defer ls.wg.Done()
	for {
		ls.mu.Lock()
		if len(l.queue) == 0 || ls.ctx.Err() != nil {
			abandoned := len(l.queue)
			l.queue, l.running = nil, false
			ls.mu.Unlock()
			if abandoned > 0 {
				ls.cr.opts.Logger.Warn("cron: fires not published before shutdown", "fires", abandoned)
			}
			return
		}
		f := l.queue[0]
		l.queue = l.queue[1:]
		ls.mu.Unlock()
		ls.cr.publish(ls.ctx, f)
	}
}

// close stops taking fires and waits for the queued ones to be published
// (or abandoned when the lanes' context ends).
func (ls *lanes) close() {
	ls.mu.Lock()
	ls.closed = true
	ls.mu.Unlock()
	ls.wg.Wait()
}

// publish publishes one fire and records its metrics.
func (cr *Cron) publish(ctx context.Context, f fireReq) {
	clock := cr.opts.Clock
	start := clock.Now()
	if !f.late {
		cr.metrics.lag.Observe(max(start.Sub(f.at), 0).Seconds())
	}
	rec, err := record(f.e, f.at, start)
	if err == nil {
		rec.Partition = f.partition
		err = cr.target.publish(ctx, f.slot, rec)
	}
	if err != nil {
		cr.metrics.publishes.WithLabelValues(f.e.Name, ResultError).Inc()
		cr.opts.Logger.Error("cron: publish failed; this fire is lost unless another cron instance published it",
			"job", f.e.Name, "scheduled_at", f.at, "topic", f.e.Topic, "err", err)
		return
	}
	cr.metrics.publish.Observe(clock.Now().Sub(start).Seconds())
	cr.metrics.publishes.WithLabelValues(f.e.Name, ResultOK).Inc()
	cr.metrics.lastFire.WithLabelValues(f.e.Name).Set(float64(f.at.UnixNano()) / 1e9)
	cr.opts.Logger.Debug("cron: published", "job", f.e.Name, "scheduled_at", f.at, "lag", start.Sub(f.at))
}
