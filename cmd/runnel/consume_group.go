package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/runnel-dev/runnel/client"
)

// consumeGroup reads as a member of group. With --until-end it stops once
// every partition assigned to it has been read to the end offset the
// partition had when the command started.
func consumeGroup(ctx context.Context, c *client.Client, cmd *cobra.Command, group string, a consumeArgs) error {
	t, err := c.DescribeTopic(ctx, a.topic)
	if err != nil {
		return err
	}
	// done[p]: partition p has nothing left to read up to its end at the
	// start (only tracked with --until-end).
	var (
		mu   sync.Mutex
		ends = map[int32]int64{}
		done = map[int32]bool{}
	)
	if a.untilEnd {
		committed, err := c.CommittedOffsets(ctx, group)
		if err != nil {
			return err
		}
		for _, p := range t.Partitions {
			offs, err := c.ListOffsets(ctx, a.topic, p.Partition, a.from)
			if err != nil {
				return err
			}
			start := offs.Offset
			if off, ok := committed[client.TopicPartition{Topic: a.topic, Partition: p.Partition}]; ok {
				start = off
			}
			ends[p.Partition] = offs.End
			done[p.Partition] = start >= offs.End
		}
	}
	g, err := c.JoinGroup(ctx, group, []string{a.topic}, client.StartAt(a.from), client.GroupClientID(fmt.Sprintf("runnel-consume-%d", os.Getpid())))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := &output{w: bufio.NewWriterSize(cmd.OutOrStdout(), 256<<10), json: a.json, num: a.num, cancel: cancel}
	finished := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range g.Assignment() {
			if !done[p.Partition] {
				return false
			}
		}
		return true
	}
	// Flush output while records trickle in; with --until-end also notice
	// when there is nothing (left) to read.
	stopTick := make(chan struct{})
	ticked := make(chan struct{})
	go func() {
		defer close(ticked)
		tick := time.NewTicker(flushEvery)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				out.flush()
				if a.untilEnd && finished() {
					cancel()
				}
			case <-stopTick:
				return
			}
		}
	}()
	var readErr error
	for r, err := range g.Records(ctx) {
		if err != nil {
			readErr = err
			break
		}
		if !out.write(r) {
			break
		}
		if a.untilEnd {
			mu.Lock()
			if r.Offset >= ends[r.Partition]-1 {
				done[r.Partition] = true
			}
			mu.Unlock()
			if finished() {
				break
			}
		}
	}
	close(stopTick)
	<-ticked
	// Write out what was read before committing it.
	flushErr := out.flush()
	closeErr := g.Close(context.WithoutCancel(ctx))
	switch {
	case readErr != nil:
		return readErr
	case flushErr != nil:
		return fmt.Errorf("write stdout: %w", flushErr)
	case closeErr != nil:
		return fmt.Errorf("leave group %s: %w", group, closeErr)
	}
	return nil
}
