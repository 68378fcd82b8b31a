package partition

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
	"github.com/runnel-dev/runnel/consumergroup"
	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/record"
)

// queueFSM is a replica's state machine with queue groups, fed raft
// entries by hand with the times the test chooses.
type queueFSM struct {
	t     *testing.T
	f     *fsm
	index uint64
}

func newQueueFSM(t *testing.T, id log.ID) *queueFSM {
	f := newTestFSM(openTestLog(t, id))
	f.queues = newQueues()
	return &queueFSM{t: t, f: f}
}

// entry applies an entry of data and returns its result.
func (q *queueFSM) entry(data []byte) result {
	q.t.Helper()
	q.index++
	res := q.f.apply(&raft.Log{Index: q.index, Term: 1, Data: data})
	if res.err != nil {
		q.t.Fatalf("entry %d: %v", q.index, res.err)
	}
	return res
}

func (q *queueFSM) append(vals ...string) {
	q.t.Helper()
	q.entry(append([]byte{entryBatch}, batchOfValues(vals...)...))
}

// op applies op through its raft entry's encoding.
func (q *queueFSM) op(op *queueOp) queueResult {
	q.t.Helper()
	res := q.entry(op.encode())
	if res.queue == nil || res.queue.err != nil {
		q.t.Fatalf("entry %d: queue result %+v", q.index, res.queue)
	}
	return *res.queue
}

// lease leases one record of group g at now for vis ms.
func (q *queueFSM) lease(g string, now, vis int64) consumergroup.QueueLease {
	q.t.Helper()
	res := q.op(&queueOp{kind: opLease, now: now, group: g, max: 1, visibility: vis})
	if len(res.leases) != 1 {
		q.t.Fatalf("lease at %d: %d leases, want 1", now, len(res.leases))
	}
	return res.leases[0]
}

// settle applies one settle of group g at now and returns its error.
func (q *queueFSM) settle(g string, now int64, s consumergroup.Settle) error {
	q.t.Helper()
	res := q.op(&queueOp{kind: opSettle, now: now, group: g, settles: []consumergroup.Settle{s}})
	return res.settles[0]
}

func (q *queueFSM) stats(g string) consumergroup.QueueStats {
	q.t.Helper()
	info := q.f.queues.info(g)
	if len(info) != 1 {
		q.t.Fatalf("group %q: %d groups described", g, len(info))
	}
	return info[0].QueueStats
}

func batchOfValues(vals ...string) record.Batch {
	recs := make([]record.Record, len(vals))
	for i, v := range vals {
		recs[i] = record.Record{Value: []byte(v)}
	}
	return record.Encode(recs...)
}

func release(ls consumergroup.QueueLease) consumergroup.Settle {
	return consumergroup.Settle{Kind: consumergroup.Release, Offset: ls.Offset, Attempt: ls.Attempt, Duration: ls.Deadline, Lease: ls.Lease}
}

func ack(ls consumergroup.QueueLease) consumergroup.Settle {
	return consumergroup.Settle{Kind: consumergroup.Ack, Offset: ls.Offset, Attempt: ls.Attempt, Lease: ls.Lease}
}

// TestQueueLeaseNumberTellsLeasesApart leases a record, releases it and
// leases it again in the same millisecond with the same visibility (as a
// new leader whose clock is behind the old one's may): both leases have
// the same attempt and deadline. A retry of the first holder's release or
// ack, after a lost answer, must not free or settle the second lease.
func TestQueueLeaseNumberTellsLeasesApart(t *testing.T) {
	q := newQueueFSM(t, log.ID{Topic: 1})
	q.append("a")
	const now, vis = 1_000, 10_000
	first := q.lease("g", now, vis)
	if err := q.settle("g", now, release(first)); err != nil {
		t.Fatalf("release of the first lease: %v", err)
	}
	second := q.lease("g", now, vis)
	if second.Attempt != first.Attempt || second.Deadline != first.Deadline {
		t.Fatalf("second lease %+v, first %+v: want the same attempt and deadline", second, first)
	}
	if second.Lease <= first.Lease {
		t.Fatalf("second lease number %d, first %d: want a larger one", second.Lease, first.Lease)
	}
	for _, s := range []consumergroup.Settle{release(first), ack(first)} {
		if err := q.settle("g", now, s); !errors.Is(err, consumergroup.ErrLeaseLost) {
			t.Fatalf("retried %s of the first lease: %v, want ErrLeaseLost", s.Kind, err)
		}
		if st := q.stats("g"); st.Leased != 1 || st.Start != 0 {
			t.Fatalf("after the retried %s of the first lease: %+v, want the record leased", s.Kind, st)
		}
	}
	if err := q.settle("g", now, ack(second)); err != nil {
		t.Fatalf("ack of the second lease: %v", err)
	}
	if st := q.stats("g"); st.Start != 1 {
		t.Fatalf("after the ack of the second lease: %+v, want the record settled", st)
	}
}

// TestQueueSettleWithoutLeaseNumber checks that a settle that names no
// lease (one from a client or an entry of before leases were numbered)
// is still written in the old entry format and matched by attempt and
// deadline, and that a settle naming one round-trips through its entry.
func TestQueueSettleWithoutLeaseNumber(t *testing.T) {
	old := &queueOp{kind: opSettle, now: 5, group: "g", settles: []consumergroup.Settle{{Kind: consumergroup.Ack, Offset: 3, Attempt: 1}}}
	if b := old.encode(); b[1] != opSettle {
		t.Fatalf("settle without lease numbers encoded as op %d, want %d", b[1], opSettle)
	}
	numbered := &queueOp{kind: opSettle, now: 5, group: "g", settles: []consumergroup.Settle{
		{Kind: consumergroup.Ack, Offset: 3, Attempt: 1},
		{Kind: consumergroup.Release, Offset: 4, Attempt: 2, Duration: 99, Lease: 7},
	}}
	for _, op := range []*queueOp{old, numbered} {
		got, err := decodeQueueOp(op.encode()[1:])
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(op, got, cmp.AllowUnexported(queueOp{})); diff != "" {
			t.Fatalf("decoded op (-encoded +decoded):\n%s", diff)
		}
	}

	q := newQueueFSM(t, log.ID{Topic: 1})
	q.append("a")
	ls := q.lease("g", 1_000, 10_000)
	unnumbered := release(ls)
	unnumbered.Lease = 0
	if err := q.settle("g", 1_000, unnumbered); err != nil {
		t.Fatalf("release without a lease number: %v", err)
	}
}

// TestQueueLeaseNumberSurvivesSnapshot restores a snapshot into another
// replica's state machine, and reloads the state from the log as a
// restart does: the next lease number is larger than any before, also
// after the group that leased them was deleted.
func TestQueueLeaseNumberSurvivesSnapshot(t *testing.T) {
	src := newQueueFSM(t, log.ID{Topic: 1})
	src.append("a", "b", "c")
	var last uint64
	for i := range 3 {
		ls := src.lease("g", int64(1_000+i), 10_000)
		if ls.Lease <= last {
			t.Fatalf("lease %d numbered %d after %d", i, ls.Lease, last)
		}
		last = ls.Lease
	}
	src.op(&queueOp{kind: opDelete, now: 2_000, group: "g"})

	// A restart loads the queue state from the log.
	reloaded := newQueues()
	if err := reloaded.load(src.f.log); err != nil {
		t.Fatal(err)
	}
	if reloaded.leases != last {
		t.Fatalf("reloaded last lease number %d, want %d", reloaded.leases, last)
	}

	store, id := persistSnapshot(t, src.f, src.index)
	_, stream := readSnapshot(t, store, id)

	dst := newQueueFSM(t, log.ID{Topic: 2})
	dstStore := newTestSnapshotStore(t, dst.f.log)
	_, drc := receiveSnapshot(t, dstStore, src.index, 1, stream)
	if err := dst.f.Restore(drc); err != nil {
		t.Fatal(err)
	}
	dst.index = src.index
	if ls := dst.lease("h", 3_000, 10_000); ls.Lease <= last {
		t.Fatalf("lease after the snapshot restore numbered %d, want more than %d", ls.Lease, last)
	}
	if ls := src.lease("h", 3_000, 10_000); ls.Lease <= last {
		t.Fatalf("lease after the group's deletion numbered %d, want more than %d", ls.Lease, last)
	}
}
