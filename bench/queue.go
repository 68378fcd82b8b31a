package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runnel-dev/runnel/client"
)

// QueueConfig is a queue-group workload: Jobs records are produced to
// Topic first (not measured), then Consumers queue consumers of one group,
// each running Concurrency no-op handlers, lease and ack them all.
type QueueConfig struct {
	Topic       string
	Jobs        int
	Size        int
	Consumers   int
	Concurrency int
	// Prefetch is each consumer's QueueOptions.Prefetch; 0: the default.
	Prefetch int
	Progress func(done int64, elapsed time.Duration)
}

// Queue measures acked jobs per second through a queue group, and the
// latency of an ack (from Ack's call to its return).
func Queue(ctx context.Context, c *client.Client, cfg QueueConfig) (*Result, error) {
	if cfg.Jobs < 1 || cfg.Consumers < 1 || cfg.Concurrency < 1 || cfg.Size < 0 {
		return nil, fmt.Errorf("queue workload: jobs %d, consumers %d and concurrency %d must be 1 or more, size %d 0 or more", cfg.Jobs, cfg.Consumers, cfg.Concurrency, cfg.Size)
	}
	if err := fill(ctx, c, cfg.Topic, cfg.Jobs, cfg.Size); err != nil {
		return nil, fmt.Errorf("queue workload: produce the jobs: %w", err)
	}
	group := fmt.Sprintf("bench-queue-%d", time.Now().UnixNano())
	lat := newLatencies()
	tl := newTimeline()
	var done, bytes atomic.Int64
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	queues := make([]*client.Queue, cfg.Consumers)
	for i := range queues {
		q, err := c.Queue(group, cfg.Topic, client.QueueOptions{Prefetch: cfg.Prefetch})
		if err != nil {
			return nil, err
		}
		queues[i] = q
		defer q.Close()
	}
	start := time.Now()
	stop := progress(cfg.Progress, &done, start)
	defer stop()
	var wg sync.WaitGroup
	for _, q := range queues {
		for range cfg.Concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					d, err := q.Next(ctx)
					if err != nil {
						return
					}
					t0 := time.Now()
					if err := q.Ack(ctx, d); err != nil {
						if ctx.Err() == nil {
							cancel(fmt.Errorf("ack %s/%d@%d: %w", d.Topic, d.Partition, d.Offset, err))
						}
						return
					}
					now := time.Now()
					lat.record(now.Sub(t0))
					tl.add(now.Sub(start))
					bytes.Add(int64(len(d.Value)))
					if done.Add(1) == int64(cfg.Jobs) {
						cancel(nil)
					}
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := context.Cause(ctx); err != nil && err != context.Canceled {
		return nil, fmt.Errorf("after %d acks: %w", done.Load(), err)
	}
	if n := done.Load(); n < int64(cfg.Jobs) {
		return nil, fmt.Errorf("queue workload: %d of %d jobs acked before the run ended", n, cfg.Jobs)
	}
	n := done.Load()
	return &Result{
		Workload:      fmt.Sprintf("queue group: %d consumers × %d no-op handlers, ack each job", cfg.Consumers, cfg.Concurrency),
		Records:       n,
		Bytes:         bytes.Load(),
		Seconds:       elapsed.Seconds(),
		RecordsPerSec: float64(n) / elapsed.Seconds(),
		MBPerSec:      float64(bytes.Load()) / elapsed.Seconds() / 1e6,
		LatencyMS:     lat.summary(),
		Throughput:    tl.perSecond(),
		latencies:     lat,
		timeline:      tl,
	}, nil
}

// fill produces n records of size random bytes to topic and waits for
// every ack.
func fill(ctx context.Context, c *client.Client, topic string, n, size int) error {
	value := make([]byte, size)
	rand.Read(value)
	var failed atomic.Pointer[error]
	for i := range n {
		r := &client.Record{Topic: topic, Key: fmt.Appendf(nil, "%d", i), Value: value}
		c.Produce(ctx, r, func(_ *client.Record, err error) {
			if err != nil {
				failed.CompareAndSwap(nil, &err)
			}
		})
		if p := failed.Load(); p != nil {
			return *p
		}
	}
	if err := c.Flush(ctx); err != nil {
		return err
	}
	if p := failed.Load(); p != nil {
		return *p
	}
	return nil
}
