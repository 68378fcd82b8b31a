package partition

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/record"
)

// Entry types: the first byte of a raft entry's data. The rest of a batch
// entry is the record batch as the producer encoded it; the rest of a queue
// entry (entryQueue, queues.go) is a queue group operation.
const (
	entryBatch byte = 1
	// entryNoop changes nothing; a leader proposes one to learn that its
	// earlier proposals are settled (see Replica.transfer).
	entryNoop byte = 2
)

// fsm is a partition's raft state machine: it appends committed batches to
// the log, assigning offsets in commit order, and keeps the idempotent
// producer state. raft calls it from one goroutine; only the counters are
// read elsewhere.
//
// Each entry is applied exactly once across restarts: the log records the
// entry's raft index in the same Pebble batch as its data and producer
// state, and entries at or below that index are skipped when raft replays
// its log after a restart.
type fsm struct {
	log    *log.Log
	dedupe *dedupe
	queues *queues
	ws     *waiters
	logger *slog.Logger

	// failed is set when the log could not be written; from then on the
	// state machine applies nothing and failCh is closed.
	failed   error
	failCh   chan struct{}
	failOnce sync.Once

	restores atomic.Int64
}

var _ raft.FSM = (*fsm)(nil)

// Apply applies one committed entry and reports the result to the waiting
// proposer, if it is on this replica.
func (f *fsm) Apply(e *raft.Log) any {
	res := f.apply(e)
	f.ws.applied(e.Extensions, res)
	return nil
}

func (f *fsm) apply(e *raft.Log) result {
	res := result{base: -1, term: e.Term, index: e.Index}
	if e.Index <= f.log.Applied() {
		// Replayed after a restart: already in the log.
		res.err = fmt.Errorf("%w: entry %d applied before a restart", ErrOutcomeUnknown, e.Index)
		return res
	}
	if f.failed != nil {
		res.err = fmt.Errorf("%w: %w", ErrOutcomeUnknown, f.failed)
		return res
	}
	if len(e.Data) == 1 && e.Data[0] == entryNoop {
		return res
	}
	if len(e.Data) > 0 && e.Data[0] == entryQueue {
		return f.applyQueue(e, res)
	}
	if len(e.Data) == 0 || e.Data[0] != entryBatch {
		// A kind of entry this version does not know: going on would
		// leave this replica's log different from the others'.
		res.err = f.fail(fmt.Errorf("entry %d: unknown entry type", e.Index))
		return res
	}
	b := record.Batch(e.Data[1:])
	// The leader validated the batch before proposing it; the CRC makes
	// the header fields the checks below read trustworthy.
	if err := b.CheckCRC(); err != nil {
		res.err = err
		return res
	}
	pv, err := f.dedupe.checkProducer(b)
	if err != nil {
		res.err = err
		return res
	}
	if pv.dup {
		res.base = pv.base
		return res
	}
	iv := f.dedupe.checkIDs(b)
	if iv.dup {
		// Not written again; an idempotent producer's sequence still moves.
		if _, err := f.log.ApplyAt(e.Index, nil, func(int64) []log.StateOp {
			return f.dedupe.recordProducer(b, iv.base, e.Index)
		}); err != nil {
			res.err = f.fail(err)
			return res
		}
		res.base = iv.base
		return res
	}
	base, err := f.log.ApplyAt(e.Index, b, func(base int64) []log.StateOp {
		ops := f.dedupe.recordProducer(b, base, e.Index)
		return append(ops, f.dedupe.recordIDs(b, iv.ids, base)...)
	})
	switch {
	case errors.Is(err, record.ErrCorrupt) || errors.Is(err, record.ErrUnsupported):
		// Rejected before anything changed, the same on every replica.
		res.err = err
	case err != nil:
		res.err = f.fail(err)
	default:
		res.base = base
	}
	return res
}

// replay applies the entries from the log's applied index up to index
// from store, before raft starts: the log lost them in a crash after raft
// took a snapshot past them. raft replays only what follows its snapshot.
func (f *fsm) replay(store raft.LogStore, index uint64) error {
	from := f.log.Applied() + 1
	if index < from {
		return nil
	}
	first, err := store.FirstIndex()
	if err != nil {
		return err
	}
	if first > from {
		return fmt.Errorf("log applied index %d is behind the newest snapshot (%d) and the raft log starts at %d: entries %d to %d are lost",
			from-1, index, first, from, first-1)
	}
	f.logger.Info("replaying raft log entries the partition log lost", "log", f.log.ID(), "from", from, "to", index)
	var e raft.Log
	for i := from; i <= index; i++ {
		if err := store.GetLog(i, &e); err != nil {
			return fmt.Errorf("replay raft log entry %d: %w", i, err)
		}
		if e.Type != raft.LogCommand {
			continue
		}
		f.apply(&e)
		if f.failed != nil {
			return f.failed
		}
	}
	return nil
}

// fail stops the state machine for good and returns the error to report.
func (f *fsm) fail(err error) error {
	f.failOnce.Do(func() {
		f.failed = fmt.Errorf("%w: %w", ErrReplicaFailed, err)
		f.logger.Error("partition state machine stopped", "log", f.log.ID(), "err", err)
		close(f.failCh)
	})
	return fmt.Errorf("%w: %w", ErrOutcomeUnknown, f.failed)
}

// Snapshot captures the state at the last applied entry: the applied index,
// the log's bounds and the producer state. The batches stay in the log;
// the snapshot store streams them when a follower needs them.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	if f.failed != nil {
		return nil, f.failed
	}
	// No state: the producer, message-id and queue state can be large,
	// and a snapshot is taken every second or two. A snapshot sent to a
	// follower takes it from the log then (snapshotStore.Open).
	return &fsmSnapshot{log: f.log, hdr: header{
		applied: f.log.Applied(),
		start:   f.log.Start(),
		end:     f.log.End(),
	}}, nil
}

// Restore replaces the log's content and the producer state with a
// snapshot received from the leader (header and batches, as
// snapshotStore.Open streams them).
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if f.failed != nil {
		return f.failed
	}
	// Proposals of this replica that are still waiting were made as a
	// leader it no longer is; the snapshot covers them or they are lost.
	f.ws.failAll(errLeadershipLost)
	br := bufio.NewReaderSize(rc, 1<<20)
	hdr, _, err := readHeader(br)
	if err != nil {
		return err
	}
	if err := restoreLog(f.log, hdr, br); err != nil {
		if errors.Is(err, errPartialGap) {
			// Nothing was written; raft answers the leader with the
			// error and it sends a snapshot again.
			f.logger.Warn("partial snapshot refused", "log", f.log.ID(), "err", err)
			return err
		}
		// The log may be half replaced: stop. Reopening the replica
		// restores the snapshot, which raft saved before calling Restore.
		f.fail(err)
		return err
	}
	if err := f.dedupe.load(f.log); err != nil {
		f.fail(err)
		return err
	}
	if err := f.queues.load(f.log); err != nil {
		f.fail(err)
		return err
	}
	f.restores.Add(1)
	f.logger.Info("partition restored from snapshot", "log", f.log.ID(), "applied", hdr.applied, "start", hdr.start, "end", hdr.end, "partial", hdr.partial)
	return nil
}

// fsmSnapshot is a captured snapshot header.
type fsmSnapshot struct {
	log *log.Log
	hdr header
}

// Persist writes the header. The batches are not copied, and the log need
// not be durable up to the captured point: raft drops its own entries only
// up to the log's Durable index (raftLogStore), and a replica that restarts
// behind its newest snapshot replays the rest from them (replayTo).
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s.hdr.encode()); err != nil {
		sink.Cancel()
		return fmt.Errorf("write snapshot: %w", err)
	}
	return sink.Close()
}

// Release does nothing: the snapshot holds no resources.
func (s *fsmSnapshot) Release() {}
