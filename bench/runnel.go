package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/runnel-dev/runnel/client"
)

// Runnel is the Driver for runnel: the workloads run over c against one
// topic. Records go to the partitions the client's partitioner picks, and
// in-flight records are bounded by the client's buffer (MaxBufferedBytes).
type Runnel struct {
	c     *client.Client
	topic string
}

var (
	_ Driver      = (*Runnel)(nil)
	_ GroupReader = (*Runnel)(nil)
)

// NewRunnel returns a driver for topic over c. The topic must exist; c
// stays the caller's to close.
func NewRunnel(c *client.Client, topic string) *Runnel {
	return &Runnel{c: c, topic: topic}
}

// Produce sends value to the topic.
func (r *Runnel) Produce(ctx context.Context, value []byte, done func(error)) {
	r.c.Produce(ctx, &client.Record{Topic: r.topic, Value: value}, func(_ *client.Record, err error) { done(err) })
}

// Lengths returns the records between each partition's start and end.
func (r *Runnel) Lengths(ctx context.Context) ([]int64, error) {
	info, err := r.c.DescribeTopic(ctx, r.topic)
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(info.Partitions))
	for _, p := range info.Partitions {
		offs, err := r.c.ListOffsets(ctx, r.topic, p.Partition, client.End())
		if err != nil {
			return nil, err
		}
		if int(p.Partition) >= len(out) || p.Partition < 0 {
			return nil, fmt.Errorf("topic %s: partition %d of %d", r.topic, p.Partition, len(out))
		}
		out[p.Partition] = offs.End - offs.Start
	}
	return out, nil
}

// Read consumes the partition from its start.
func (r *Runnel) Read(ctx context.Context, partition int, n int64, fn func(value []byte)) error {
	if n <= 0 {
		return nil
	}
	var read int64
	for rec, err := range r.c.Consume(ctx, r.topic, int32(partition), client.Start()) {
		if err != nil {
			return err
		}
		fn(rec.Value)
		if read++; read == n {
			return nil
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("partition %d ended after %d of %d records", partition, read, n)
}

// ReadGroup joins members members to group, each committing automatically
// once a second, and reads until ctx ends. The members leave the group on
// return.
func (r *Runnel) ReadGroup(ctx context.Context, group string, members int, fn func(value []byte)) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for range max(members, 1) {
		g, err := r.c.JoinGroup(ctx, group, []string{r.topic}, client.AutoCommitInterval(time.Second))
		if err != nil {
			cancel(err)
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer g.Close(context.WithoutCancel(ctx))
			for rec, err := range g.Records(ctx) {
				if err != nil {
					cancel(err)
					return
				}
				fn(rec.Value)
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
