package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runnel-dev/runnel/client"
)

// ConsumeConfig is a read workload over records already in a topic.
type ConsumeConfig struct {
	Topic string
	// Group, when set, reads as Members members of this consumer group;
	// otherwise one plain consumer per partition reads from the start.
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
func Consume(ctx context.Context, c *client.Client, cfg ConsumeConfig) (*Result, error) {
	info, err := c.DescribeTopic(ctx, cfg.Topic)
	if err != nil {
		return nil, err
	}
	var want, bytesPer int64
	ends := make([]int64, len(info.Partitions))
	for i, p := range info.Partitions {
		offs, err := c.ListOffsets(ctx, cfg.Topic, p.Partition, client.End())
		if err != nil {
			return nil, err
		}
		ends[i] = offs.End
		want += offs.End - offs.Start
	}
	if want == 0 {
		return nil, fmt.Errorf("topic %s is empty; produce records into it first", cfg.Topic)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	lat := newLatencies()
	tl := newTimeline()
	var read, size atomic.Int64
	start := time.Now()
	stop := progress(cfg.Progress, &read, start)
	defer stop()
	doneOne := func(n int) {
		size.Add(int64(n))
		since := time.Since(start)
		lat.record(since)
		tl.add(since)
		if read.Add(1) == want {
			cancel(nil)
		}
	}
	var wg sync.WaitGroup
	fail := func(err error) { cancel(err) }
	if cfg.Group == "" {
		for i, p := range info.Partitions {
			if ends[i] == 0 {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r, err := range c.Consume(ctx, cfg.Topic, p.Partition, client.Start()) {
					if err != nil {
						fail(err)
						return
					}
					doneOne(len(r.Value))
					if r.Offset >= ends[i]-1 {
						return
					}
				}
			}()
		}
	} else {
		members := max(cfg.Members, 1)
		for range members {
			g, err := c.JoinGroup(ctx, cfg.Group, []string{cfg.Topic}, client.AutoCommitInterval(time.Second))
			if err != nil {
				cancel(err)
				break
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer g.Close(context.WithoutCancel(ctx))
				for r, err := range g.Records(ctx) {
					if err != nil {
						fail(err)
						return
					}
					doneOne(len(r.Value))
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := context.Cause(ctx); err != nil && err != context.Canceled {
		return nil, err
	}
	n := read.Load()
	bytesPer = size.Load()
	workload := "consume"
	if cfg.Group != "" {
		workload = fmt.Sprintf("group consume (%d members)", max(cfg.Members, 1))
	}
	return &Result{
		Workload:      workload,
		Records:       n,
		Bytes:         bytesPer,
		Seconds:       elapsed.Seconds(),
		RecordsPerSec: float64(n) / elapsed.Seconds(),
		MBPerSec:      float64(bytesPer) / elapsed.Seconds() / 1e6,
		LatencyMS:     lat.summary(),
		Throughput:    tl.perSecond(),
		latencies:     lat,
	}, nil
}
