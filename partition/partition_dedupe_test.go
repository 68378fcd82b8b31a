package partition_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/partition"
	"github.com/runnel-dev/runnel/record"
)

// onePartition is a Partition on a store it can close and open again.
type onePartition struct {
	t    *testing.T
	dir  string
	opts partition.Options
	s    *log.Store
	l    *log.Log
	p    *partition.Partition
}

func newOnePartition(t *testing.T, opts partition.Options) *onePartition {
	op := &onePartition{t: t, dir: t.TempDir(), opts: opts}
	op.open()
	t.Cleanup(func() { op.s.Close() })
	return op
}

func (op *onePartition) open() {
	op.t.Helper()
	s, err := log.Open(op.dir, log.Options{RetentionInterval: -1})
	if err != nil {
		op.t.Fatal(err)
	}
	l, err := s.Log(log.ID{Topic: 1})
	if err != nil {
		op.t.Fatal(err)
	}
	op.s, op.l, op.p = s, l, partition.New(l, op.opts)
}

// restart closes the store and opens the partition again over it.
func (op *onePartition) restart() {
	op.t.Helper()
	if err := op.s.Close(); err != nil {
		op.t.Fatal(err)
	}
	op.open()
}

// appendWait appends b and waits for its offset.
func (op *onePartition) appendWait(b record.Batch) (int64, error) {
	pd, err := op.p.Append(b, partition.AcksAll)
	if err != nil {
		return -1, err
	}
	return pd.WaitOffset()
}

func (op *onePartition) mustAppend(b record.Batch) int64 {
	op.t.Helper()
	base, err := op.appendWait(b)
	if err != nil {
		op.t.Fatal(err)
	}
	return base
}

// TestPartitionIdempotentProducer is TestIdempotentProducer on one node.
func TestPartitionIdempotentProducer(t *testing.T) {
	op := newOnePartition(t, partition.Options{})

	b1 := producerBatch(1, 0, 0, "a", "b")
	if base := op.mustAppend(b1); base != 0 {
		t.Fatalf("first batch at %d", base)
	}
	if base := op.mustAppend(b1); base != 0 {
		t.Fatalf("the same batch again: offset %d, want the original 0", base)
	}
	if base := op.mustAppend(producerBatch(1, 0, 2, "c")); base != 2 {
		t.Fatalf("next batch at %d, want 2", base)
	}
	if base := op.mustAppend(b1); base != 0 {
		t.Fatalf("an older batch again: offset %d, want 0", base)
	}
	if _, err := op.appendWait(producerBatch(1, 0, 5, "gap")); !errors.Is(err, partition.ErrOutOfOrderSequence) {
		t.Fatalf("sequence gap: %v, want ErrOutOfOrderSequence", err)
	}
	if _, err := op.appendWait(producerBatch(1, 0, 1, "b", "c")); !errors.Is(err, partition.ErrDuplicateSequence) {
		t.Fatalf("written sequences in a new batch: %v, want ErrDuplicateSequence", err)
	}
	if _, err := op.appendWait(producerBatch(1, 0, 2, "c", "c2")); !errors.Is(err, partition.ErrOutOfOrderSequence) {
		t.Fatalf("overlapping sequences: %v, want ErrOutOfOrderSequence", err)
	}
	for i := range 5 {
		op.mustAppend(producerBatch(1, 0, int32(3+i), fmt.Sprint("d", i)))
	}
	if _, err := op.appendWait(b1); !errors.Is(err, partition.ErrDuplicateSequence) {
		t.Fatalf("a batch older than the recent ones: %v, want ErrDuplicateSequence", err)
	}
	if base := op.mustAppend(producerBatch(1, 1, 0, "e")); base != 8 {
		t.Fatalf("new epoch at %d, want 8", base)
	}
	if _, err := op.appendWait(producerBatch(1, 0, 8, "old")); !errors.Is(err, partition.ErrProducerFenced) {
		t.Fatalf("old epoch: %v, want ErrProducerFenced", err)
	}
	op.mustAppend(producerBatch(2, 0, 100, "f"))
	op.mustAppend(batchOf("g"))
	op.mustAppend(batchOf("g"))

	want := map[int64]string{0: "a", 1: "b", 2: "c", 3: "d0", 4: "d1", 5: "d2", 6: "d3", 7: "d4", 8: "e", 9: "f", 10: "g", 11: "g"}
	if diff := cmp.Diff(want, values(t, op.l)); diff != "" {
		t.Fatalf("log (-want +got):\n%s", diff)
	}

	// The state survives a restart: the last batch is still recognized.
	op.restart()
	if base := op.mustAppend(producerBatch(2, 0, 100, "f")); base != 9 {
		t.Fatalf("retry after a restart: offset %d, want 9", base)
	}
	if _, err := op.appendWait(producerBatch(1, 0, 9, "x")); !errors.Is(err, partition.ErrProducerFenced) {
		t.Fatalf("old epoch after a restart: %v", err)
	}
	if _, err := op.appendWait(producerBatch(2, 0, 105, "gap")); !errors.Is(err, partition.ErrOutOfOrderSequence) {
		t.Fatalf("sequence gap after a restart: %v", err)
	}
	if base := op.mustAppend(producerBatch(2, 0, 101, "h")); base != 12 {
		t.Fatalf("next batch after a restart at %d, want 12", base)
	}
	if op.l.End() != 13 {
		t.Fatalf("end %d after retries, want 13", op.l.End())
	}
}

// TestPartitionMsgIDWindow is TestMsgIDWindow on one node.
func TestPartitionMsgIDWindow(t *testing.T) {
	op := newOnePartition(t, partition.Options{MsgIDWindow: time.Second, MaxMsgIDs: 3})
	check := func(what string, b record.Batch, want int64) {
		t.Helper()
		got, err := op.appendWait(b)
		if err != nil || got != want {
			t.Fatalf("%s: offset %d, %v, want %d", what, got, err, want)
		}
	}
	check("first fire", msgBatch(1000, "job@1"), 0)
	check("second instance's fire", msgBatch(1500, "job@1"), 0)
	check("another id", msgBatch(1500, "job@2"), 1)
	check("batch of seen ids", msgBatch(1600, "job@2", "job@1"), 1)
	check("batch with a new id", msgBatch(1600, "job@1", "job@3"), 2) // written whole
	check("the new id again", msgBatch(1700, "job@3"), 3)
	check("a record without an id", msgBatch(1700, ""), 4)
	check("a record without an id again", msgBatch(1700, ""), 5)

	var pb record.Builder
	pb.SetProducer(5, 0, 0)
	pb.Append(&record.Record{Value: []byte("p"), Timestamp: 1800, Headers: []record.Header{{Key: partition.MsgIDHeader, Value: []byte("job@3")}}})
	check("a producer's batch with a seen id", append(record.Batch(nil), pb.Build()...), 3)
	check("the producer's next batch", producerBatch(5, 0, 1, "q"), 6)

	check("a later id", msgBatch(2600, "job@4"), 7)
	check("job@1 out of the window", msgBatch(2600, "job@1"), 8)
	check("job@5", msgBatch(2600, "job@5"), 9)
	check("job@3 pushed out", msgBatch(2600, "job@3"), 10)
	check("job@5 again", msgBatch(2600, "job@5"), 9)

	op.restart()
	check("job@5 after a restart", msgBatch(2700, "job@5"), 9)
	check("the producer's next batch after a restart", producerBatch(5, 0, 2, "r"), 11)
	check("a new id after a restart", msgBatch(2700, "job@6"), 12)
}

// TestPartitionProducerEviction checks that the least recently used
// producer is forgotten first, in the order of use before a restart too.
func TestPartitionProducerEviction(t *testing.T) {
	op := newOnePartition(t, partition.Options{MaxProducers: 2})
	op.mustAppend(producerBatch(1, 0, 0, "1a")) // 0
	op.mustAppend(producerBatch(2, 0, 0, "2a")) // 1
	op.mustAppend(producerBatch(1, 0, 1, "1b")) // 2: producer 2 is now the least recent
	op.restart()
	op.mustAppend(producerBatch(3, 0, 0, "3a")) // 3: forgets producer 2
	op.restart()
	op.mustAppend(producerBatch(4, 0, 0, "4a")) // 4: forgets producer 1, used before 3
	if base := op.mustAppend(producerBatch(3, 0, 0, "3a")); base != 3 {
		t.Fatalf("retry of producer 3: offset %d, want the original 3", base)
	}
	// Producer 1 is forgotten: its retry is taken as new.
	if base := op.mustAppend(producerBatch(1, 0, 1, "1b")); base != 5 {
		t.Fatalf("retry of the forgotten producer 1: offset %d, want 5", base)
	}
}

// TestPartitionSameIDsConcurrently appends batches with the same message
// ids from several producers at once: each id is written once, and every
// producer is answered with its offset.
func TestPartitionSameIDsConcurrently(t *testing.T) {
	op := newOnePartition(t, partition.Options{})
	const producers, ids = 6, 50
	answers := make([][]int64, producers)
	var wg sync.WaitGroup
	for w := range producers {
		answers[w] = make([]int64, ids)
		wg.Go(func() {
			for i := range ids {
				// Every other id carries a producer of its own too, with
				// its own sequence.
				b := msgBatch(int64(1000+i), fmt.Sprint("fire@", i))
				if i%2 == 1 {
					var pb record.Builder
					pb.SetProducer(int64(100+w), 0, int32(i/2))
					pb.Append(&record.Record{Value: []byte(fmt.Sprint("fire@", i)), Timestamp: int64(1000 + i),
						Headers: []record.Header{{Key: partition.MsgIDHeader, Value: []byte(fmt.Sprint("fire@", i))}}})
					b = append(record.Batch(nil), pb.Build()...)
				}
				base, err := op.appendWait(b)
				if err != nil {
					t.Error(err)
					return
				}
				answers[w][i] = base
			}
		})
	}
	wg.Wait()
	got := values(t, op.l)
	if len(got) != ids {
		t.Fatalf("%d records written, want %d", len(got), ids)
	}
	for i := range ids {
		off := answers[0][i]
		if got[off] != fmt.Sprint("fire@", i) {
			t.Fatalf("fire@%d answered at %d, which holds %q", i, off, got[off])
		}
		for w := range producers {
			if answers[w][i] != off {
				t.Fatalf("fire@%d answered %d to producer %d and %d to producer 0", i, answers[w][i], w, off)
			}
		}
	}
}

// TestPartitionRetriesConcurrently appends every batch of an idempotent
// producer from several goroutines at once, as retries racing the first
// copy: each is written once, and every copy is answered with its offset.
func TestPartitionRetriesConcurrently(t *testing.T) {
	op := newOnePartition(t, partition.Options{})
	const batches, copies = 50, 4
	for i := range batches {
		b := producerBatch(7, 0, int32(2*i), fmt.Sprint(i, "a"), fmt.Sprint(i, "b"))
		var (
			wg    sync.WaitGroup
			bases [copies]int64
		)
		for k := range copies {
			wg.Go(func() {
				base, err := op.appendWait(append(record.Batch(nil), b...))
				if err != nil {
					t.Error(err)
				}
				bases[k] = base
			})
		}
		wg.Wait()
		for k := range copies {
			if bases[k] != int64(2*i) {
				t.Fatalf("batch %d: copies answered %v, want %d", i, bases, 2*i)
			}
		}
	}
	got := values(t, op.l)
	if len(got) != 2*batches {
		t.Fatalf("%d records written, want %d", len(got), 2*batches)
	}
}
