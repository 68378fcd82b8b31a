package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runnel-dev/runnel/client"
)

// CommitsConfig is an offset-commit workload: Workers goroutines, each
// committing one partition's offset for its own group, one commit after
// the other, until Commits commits are done.
type CommitsConfig struct {
	Topic    string
	Workers  int
	Commits  int
	Progress func(done int64, elapsed time.Duration)
}

// Commits measures committed-offset writes per second and their latency.
// Each worker uses a group of its own without members, so the commits
// exercise the durable offset store, not group membership.
func Commits(ctx context.Context, c *client.Client, cfg CommitsConfig) (*Result, error) {
	if cfg.Workers < 1 || cfg.Commits < 1 {
		return nil, fmt.Errorf("commits workload: workers %d and commits %d must be 1 or more", cfg.Workers, cfg.Commits)
	}
	info, err := c.DescribeTopic(ctx, cfg.Topic)
	if err != nil {
		return nil, err
	}
	run := fmt.Sprintf("bench-commits-%d", time.Now().UnixNano())
	lat := newLatencies()
	tl := newTimeline()
	var done atomic.Int64
	var next atomic.Int64
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	start := time.Now()
	stop := progress(cfg.Progress, &done, start)
	defer stop()
	var wg sync.WaitGroup
	for w := range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			group := fmt.Sprintf("%s-%d", run, w)
			tp := client.TopicPartition{Topic: cfg.Topic, Partition: int32(w % len(info.Partitions))}
			for off := int64(1); next.Add(1) <= int64(cfg.Commits); off++ {
				t0 := time.Now()
				if err := c.CommitOffsets(ctx, group, map[client.TopicPartition]int64{tp: off}); err != nil {
					cancel(err)
					return
				}
				now := time.Now()
				lat.record(now.Sub(t0))
				tl.add(now.Sub(start))
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := context.Cause(ctx); err != nil {
		return nil, fmt.Errorf("after %d commits: %w", done.Load(), err)
	}
	// Leave nothing behind: the groups exist only for the run.
	for w := range cfg.Workers {
		c.DeleteGroup(context.WithoutCancel(ctx), fmt.Sprintf("%s-%d", run, w))
	}
	n := done.Load()
	return &Result{
		Workload:      fmt.Sprintf("offset commits (%d workers)", cfg.Workers),
		Records:       n,
		Seconds:       elapsed.Seconds(),
		RecordsPerSec: float64(n) / elapsed.Seconds(),
		LatencyMS:     lat.summary(),
		Throughput:    tl.perSecond(),
		latencies:     lat,
		timeline:      tl,
	}, nil
}
