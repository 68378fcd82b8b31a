package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/runnel-dev/runnel/client"
)

// MsgIDHeader is the header that carries an output's message id, the one
// the broker's dedupe window reads.
const MsgIDHeader = client.MsgIDHeader

// Func turns one input record into the records to produce for it, each
// with its Topic set; none drops the input. in and its bytes are valid only
// during the call: outputs may share in's Key, Value and Headers, as Run
// produces them before it reads the next input. An error stops Run
// without committing in's offset.
type Func func(ctx context.Context, in *client.Record) ([]*client.Record, error)

// MsgID returns the message id Run gives output i of the input at
// topic/partition/offset in group: "group/topic/partition/offset/i".
func MsgID(group, topic string, partition int32, offset int64, i int) string {
	return group + "/" + topic + "/" + strconv.Itoa(int(partition)) + "/" + strconv.FormatInt(offset, 10) + "/" + strconv.Itoa(i)
}

// Run runs a stage: it joins consumer group group on inputs, calls f for
// every input record, produces f's outputs and commits input offsets once
// the outputs are acked (see the package documentation). It returns nil
// when ctx ends, after committing what was acknowledged (nothing since the
// last commit if ctx ended inside f: those inputs are read again by the
// next run), and otherwise the first error: from joining, consuming, f,
// producing or committing.
func Run(ctx context.Context, c *client.Client, group string, inputs []string, f Func, opts ...Option) error {
	cfg := newConfig(c, opts)
	g, err := c.JoinGroup(ctx, group, inputs, append(cfg.groupOpts, client.ManualCommit())...)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("pipeline %s: join: %w", group, err)
	}
	s := &stage{cfg: cfg, group: group, g: g, lastCommit: time.Now()}
	err = s.run(ctx, f)
	// Commit what is acked before leaving, so that the next member
	// starts after it; on an error, or when ctx ended inside f, only up
	// to the last good commit: a commit now would cover the input f did
	// not finish.
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	interrupted := errors.Is(err, errInterrupted)
	if interrupted {
		err = nil
	} else if err == nil {
		err = s.commit(closeCtx)
	}
	if cerr := g.Close(closeCtx); err == nil && cerr != nil && !errors.Is(cerr, context.Canceled) {
		err = fmt.Errorf("pipeline %s: leave group: %w", group, cerr)
	}
	return err
}

// errInterrupted ends run when ctx ended while f handled an input: the
// stage stops without committing that input.
var errInterrupted = errors.New("pipeline: stopped inside the stage function")

// stage is one Run's state.
type stage struct {
	cfg        config
	group      string
	g          *client.GroupConsumer
	uncommited int // inputs processed since the last commit
	lastCommit time.Time

	pending sync.WaitGroup // outputs not acked yet

	mu     sync.Mutex
	failed error // the first produce failure
}

func (s *stage) run(ctx context.Context, f Func) error {
	for in, err := range s.g.Records(ctx) {
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("pipeline %s: consume: %w", s.group, err)
		}
		outs, err := f(ctx, in)
		if err != nil {
			if ctx.Err() != nil {
				return errInterrupted
			}
			return fmt.Errorf("pipeline %s: %s/%d@%d: %w", s.group, in.Topic, in.Partition, in.Offset, err)
		}
		for i, out := range outs {
			if out.Topic == "" {
				return fmt.Errorf("pipeline %s: %s/%d@%d output %d: %w", s.group, in.Topic, in.Partition, in.Offset, i, ErrNoTopic)
			}
			out.Headers = withMsgID(out.Headers, MsgID(s.group, in.Topic, in.Partition, in.Offset, i))
			if err := s.produce(ctx, out); err != nil {
				return err
			}
		}
		s.uncommited++
		if s.uncommited >= s.cfg.commitRecords || time.Since(s.lastCommit) >= s.cfg.commitInterval {
			if err := s.commit(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
		if err := s.err(); err != nil {
			return err
		}
	}
	return nil
}

// produce sends out, with a context that outlives ctx: outputs already
// handed to the producer are still sent when the stage is stopped, so
// that the final commit can cover them.
func (s *stage) produce(ctx context.Context, out *client.Record) error {
	pctx := context.WithoutCancel(ctx)
	if s.cfg.unbatched {
		if err := s.cfg.producer.ProduceSync(pctx, out); err != nil {
			return fmt.Errorf("pipeline %s: produce to %s: %w", s.group, out.Topic, err)
		}
		return nil
	}
	s.pending.Add(1)
	s.cfg.producer.Produce(pctx, out, s.acked)
	return nil
}

// acked is the promise of every output.
func (s *stage) acked(r *client.Record, err error) {
	defer s.pending.Done()
	if err == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed == nil {
		s.failed = fmt.Errorf("pipeline %s: produce to %s: %w", s.group, r.Topic, err)
	}
}

func (s *stage) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// commit waits until every output produced so far is acked and then
// commits the offsets of every input read so far.
func (s *stage) commit(ctx context.Context) error {
	if s.uncommited == 0 {
		return s.err()
	}
	if err := s.cfg.producer.Flush(ctx); err != nil {
		return fmt.Errorf("pipeline %s: flush: %w", s.group, err)
	}
	// A failed output keeps its input uncommitted.
	s.pending.Wait()
	if err := s.err(); err != nil {
		return err
	}
	if err := s.g.Commit(ctx); err != nil {
		if errors.Is(err, client.ErrStaleGeneration) {
			// A partition moved to another member meanwhile: it reads
			// again from the last commit (outputs with the same ids).
			// The partitions still held are committed next time.
			return nil
		}
		return fmt.Errorf("pipeline %s: commit: %w", s.group, err)
	}
	s.uncommited, s.lastCommit = 0, time.Now()
	return nil
}

// withMsgID returns hs without any message id header, plus id as one.
func withMsgID(hs []client.Header, id string) []client.Header {
	out := make([]client.Header, 0, len(hs)+1)
	for _, h := range hs {
		if h.Key != MsgIDHeader {
			out = append(out, h)
		}
	}
	return append(out, client.Header{Key: MsgIDHeader, Value: []byte(id)})
}
