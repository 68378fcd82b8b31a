package client

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/runnel-dev/runnel/proto/runnelpb"
	"github.com/runnel-dev/runnel/record"
)

// Consume reads one partition of topic from the position from, in offset
// order, and never stops at the end of the log: it waits there for new
// records (a long poll) until ctx ends or the caller stops ranging.
//
//	for r, err := range c.Consume(ctx, "events", 0, client.Start()) {
//		if err != nil {
//			return err
//		}
//		process(r.Value)
//	}
//
// The Record yielded, with its Key, Value and Headers, is reused and
// aliases the client's buffers: it is valid only until the next iteration.
// Use Record.Clone to keep one.
//
// Consume reconnects by itself on retriable errors (a new leader, a broker
// restart), resuming after the last record yielded; it yields an error and
// ends when one is not retriable, such as *OffsetOutOfRangeError, or when
// retrying has not made progress for DeliveryTimeout. When ctx ends, the
// iteration ends without an error.
//
// The broker sends at most FetchCredit bytes ahead of what has been read
// (credit-based flow control), so a slow reader holds a bounded amount of
// memory.
func (c *Client) Consume(ctx context.Context, topic string, partition int32, from Position) iter.Seq2[*Record, error] {
	return func(yield func(*Record, error) bool) {
		var rec Record
		rec.Topic, rec.Partition = topic, partition
		err := c.fetchLoop(ctx, topic, partition, from, func(f *fetch, resp *runnelpb.FetchResponse) (bool, error) {
			for _, raw := range resp.GetBatches() {
				it := record.Batch(raw).Iter()
				for it.Next() {
					r := it.Record()
					if r.Offset < f.next {
						continue
					}
					f.next = r.Offset + 1
					rec.Key, rec.Value, rec.Headers = r.Key, r.Value, r.Headers
					rec.Timestamp = time.UnixMilli(r.Timestamp)
					rec.Offset = r.Offset
					if !yield(&rec, nil) {
						return false, nil
					}
				}
				if err := it.Err(); err != nil {
					return false, fmt.Errorf("fetch %s/%d: %w", topic, partition, err)
				}
			}
			return true, nil
		})
		if err != nil {
			yield(nil, err)
		}
	}
}

// fetchLoop reads one partition from the position from and hands each
// fetch response to onResp, on this goroutine, until onResp returns false
// or an error, or ctx ends (both without an error). It reconnects on
// retriable errors, resuming at f.next, and returns an error when one is
// not retriable or retrying has not made progress for DeliveryTimeout.
// onResp may advance f.next past the records it consumed; after it
// returns, f.next moves past the response's batches.
func (c *Client) fetchLoop(ctx context.Context, topic string, partition int32, from Position, onResp func(f *fetch, resp *runnelpb.FetchResponse) (bool, error)) error {
	f := fetch{c: c, topic: topic, partition: partition, next: -1}
	pos := from
	if _, ok := from.TimeValue(); ok || from.IsEnd() {
		// Resolve a time or the end to an offset first: records of the
		// first batch that come before a time are skipped exactly, and a
		// stream that ends before its first record (its node stopped
		// leading) resumes where the read began, not at the end of then.
		offs, err := c.ListOffsets(ctx, topic, partition, from)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		pos = Offset(offs.Offset)
	}
	if o, ok := pos.OffsetValue(); ok {
		f.next = o
	}
	lastProgress := time.Now()
	attempts := 0
	for {
		progressed, err := f.run(ctx, pos, onResp)
		if err == nil || ctx.Err() != nil {
			return nil // the caller stopped, or ctx ended
		}
		var stop *stopError
		if errors.As(err, &stop) {
			return stop.err
		}
		if progressed {
			lastProgress, attempts = time.Now(), 0
		}
		if !Retriable(err) || time.Since(lastProgress) > c.cfg.deliveryTimeout {
			return err
		}
		// A node that does not lead (or no longer leads) names the leader:
		// the first retry goes there at once, later ones after a backoff.
		var nl *NotLeaderError
		hinted := errors.As(err, &nl) && c.meta.follow(topic, partition, nl)
		c.meta.refresh()
		attempts++
		c.cfg.logger.Debug("runnel client: fetch retry", "topic", topic, "partition", partition, "attempt", attempts, "err", err)
		if !hinted || attempts > 1 {
			if c.sleep(ctx, c.prod.backoff(attempts)) != nil {
				if ctx.Err() == nil {
					return ErrClosed
				}
				return nil
			}
		}
		if f.next >= 0 {
			pos = Offset(f.next)
		}
	}
}

// stopError carries an error of the response handler out of fetch.run,
// marked as final.
type stopError struct{ err error }

func (e *stopError) Error() string { return e.err.Error() }

// fetch is the state of one fetchLoop across reconnects.
type fetch struct {
	c         *Client
	topic     string
	partition int32
	next      int64 // the next offset to hand on; -1 before the first is known
}

// run streams from pos until an error or the handler stops. It returns a
// nil error only when the handler stopped or ctx ended, and reports
// whether any response arrived.
func (f *fetch) run(ctx context.Context, pos Position, onResp func(f *fetch, resp *runnelpb.FetchResponse) (bool, error)) (progressed bool, err error) {
	c := f.c
	addr, err := c.meta.leaderFresh(ctx, f.topic, f.partition)
	if err != nil {
		return false, err
	}
	bc, err := c.conn(addr)
	if err != nil {
		return false, err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fs, err := bc.Fetch(sctx)
	if err != nil {
		return false, f.streamErr(ctx, addr, err)
	}
	credit := c.cfg.fetchCredit
	err = fs.Send(&runnelpb.FetchRequest{
		Topic:       f.topic,
		Partition:   f.partition,
		From:        pos.proto(),
		CreditBytes: credit,
		MaxBytes:    c.cfg.fetchMaxBytes,
	})
	if err != nil {
		_, err = fs.Recv() // the stream's real error
		return false, f.streamErr(ctx, addr, err)
	}
	var used int64 // bytes read since credit was last granted
	for {
		resp, err := fs.Recv()
		if err != nil {
			return progressed, f.streamErr(ctx, addr, err)
		}
		progressed = true
		more, err := onResp(f, resp)
		if err != nil {
			return true, &stopError{err}
		}
		if !more {
			return true, nil
		}
		for _, raw := range resp.GetBatches() {
			if b := record.Batch(raw); len(b) >= record.HeaderSize {
				f.next = max(f.next, b.NextOffset())
			}
			used += int64(len(raw))
		}
		if n := resp.GetNextOffset(); n > 0 {
			f.next = max(f.next, n)
		}
		if used >= credit/2 {
			if err := fs.Send(&runnelpb.FetchRequest{CreditBytes: used}); err != nil {
				_, err = fs.Recv()
				return true, f.streamErr(ctx, addr, err)
			}
			used = 0
		}
	}
}

// streamErr turns the error that ended a fetch stream into the error run
// returns: nil when ctx ended, else a client error, retriable when the
// stream broke without a broker status.
func (f *fetch) streamErr(ctx context.Context, addr string, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	if err == nil {
		err = errors.New("stream closed")
	}
	e := fromStatus(err, addr)
	var be *Error
	var ce *ConnectError
	if errors.As(e, &be) || errors.As(e, &ce) {
		return e
	}
	return &Error{
		Kind:    ErrUnavailable,
		Reason:  "STREAM_BROKEN",
		Message: fmt.Sprintf("fetch stream of %s/%d from %s ended: %v", f.topic, f.partition, addr, err),
	}
}
