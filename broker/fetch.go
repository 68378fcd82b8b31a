package broker

import (
	"errors"
	"io"
	"sync"

	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// credit is the byte allowance a fetch stream's client has granted.
type credit struct {
	mu      sync.Mutex
	bytes   int64
	changed chan struct{} // closed and replaced when bytes grows
	err     error         // set when the client's side of the stream ends
}

func newCredit(initial int64) *credit {
	return &credit{bytes: initial, changed: make(chan struct{})}
}

func (c *credit) add(n int64, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bytes += n
	if err != nil && c.err == nil {
		c.err = err
	}
	close(c.changed)
	c.changed = make(chan struct{})
}

// available returns the credit left and a channel closed when it changes.
func (c *credit) available() (int64, <-chan struct{}, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes, c.changed, c.err
}

func (c *credit) spend(n int64) {
	c.mu.Lock()
	c.bytes -= n
	c.mu.Unlock()
}

// leaderOnly is a replica that serves reads only while it leads its
// partition, and once it has applied what its predecessor committed: a
// cluster's. A fetch stream that outlives its leadership ends with the
// not-leader error, and the client resumes on the new leader.
type leaderOnly interface {
	// LeaderChanged returns a channel closed when the leader changes.
	LeaderChanged() <-chan struct{}
	// checkReadable returns nil while the replica may serve reads, and
	// otherwise the error for a read of topic/part.
	checkReadable(topic string, part int32) error
}

var _ leaderOnly = (*hostedReplica)(nil)

// Fetch streams one partition from a position. The server sends while the
// client has credit (one batch may overshoot it), and at the end of the log
// waits for the high watermark to move. In a cluster only the partition's
// leader serves it, and the stream ends with NOT_LEADER once the node stops
// leading, so that the client resumes on the new leader.
func (s *service) Fetch(stream runnelpb.Broker_FetchServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	_, p, err := s.b.topics.partition(first.Topic, first.Partition)
	if err != nil {
		return toStatus(err)
	}
	// lost is closed when the leader changes (never on a single node);
	// taken before the check, so no change is missed.
	var lost <-chan struct{}
	lead, _ := p.(leaderOnly)
	if lead != nil {
		lost = lead.LeaderChanged()
		if err := lead.checkReadable(first.Topic, first.Partition); err != nil {
			return toStatus(err)
		}
	}
	next, err := resolvePosition(first.Topic, first.Partition, p, first.From)
	if err != nil {
		return toStatus(err)
	}
	if first.CreditBytes <= 0 {
		return toStatus(errorf(ErrInvalidRequest, "fetch of %s/%d grants no credit; send credit_bytes > 0", first.Topic, first.Partition))
	}
	maxBytes := s.b.opts.MaxFetchBytes
	if first.MaxBytes > 0 && int(first.MaxBytes) < maxBytes {
		maxBytes = int(first.MaxBytes)
	}

	cr := newCredit(first.CreditBytes)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = io.EOF
				}
				cr.add(0, err)
				return
			}
			cr.add(req.CreditBytes, nil)
		}
	}()

	for {
		select {
		case <-lost:
			lost = lead.LeaderChanged()
			if err := lead.checkReadable(first.Topic, first.Partition); err != nil {
				return toStatus(err)
			}
		default:
		}
		avail, changed, cerr := cr.available()
		if cerr != nil && !errors.Is(cerr, io.EOF) {
			return nil // the client went away
		}
		if avail <= 0 {
			if cerr != nil {
				return nil // no more credit can come
			}
			select {
			case <-changed:
				continue
			case <-lost:
				continue
			case <-ctx.Done():
				return nil
			case <-s.b.closing:
				return toStatus(ErrShuttingDown)
			}
		}
		wait := p.Wait() // taken before Read, so no append is missed
		batches, err := p.Read(next, int(min(int64(maxBytes), avail)))
		if err != nil {
			return toStatus(outOfRange(first.Topic, first.Partition, err))
		}
		if len(batches) == 0 {
			select {
			case <-wait:
				continue
			case <-lost:
				continue
			case <-ctx.Done():
				return nil
			case <-s.b.closing:
				return toStatus(ErrShuttingDown)
			}
		}
		resp := &runnelpb.FetchResponse{Batches: make([][]byte, len(batches)), HighWatermark: p.End(), StartOffset: p.Start()}
		var n int64
		for i, b := range batches {
			resp.Batches[i] = b
			n += int64(len(b))
		}
		next = batches[len(batches)-1].NextOffset()
		resp.NextOffset = next
		if err := stream.Send(resp); err != nil {
			return err
		}
		cr.spend(n)
		s.b.met.fetched(first.Topic, batches)
	}
}
