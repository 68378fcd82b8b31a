package partition_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/runnel-dev/runnel/partition"
	"github.com/runnel-dev/runnel/record"
)

func TestIdempotentProducer(t *testing.T) {
	c := newCluster(t, 1, nil)
	nd := c.leader()
	r := nd.r

	b1 := producerBatch(1, 0, 0, "a", "b")
	if base := mustAppend(t, r, b1); base != 0 {
		t.Fatalf("first batch at %d", base)
	}
	if base := mustAppend(t, r, b1); base != 0 {
		t.Fatalf("the same batch again: offset %d, want the original 0", base)
	}
	if base := mustAppend(t, r, producerBatch(1, 0, 2, "c")); base != 2 {
		t.Fatalf("next batch at %d, want 2", base)
	}
	if base := mustAppend(t, r, b1); base != 0 {
		t.Fatalf("an older batch again: offset %d, want 0", base)
	}
	if _, err := appendWait(r, producerBatch(1, 0, 5, "gap")); !errors.Is(err, partition.ErrOutOfOrderSequence) {
		t.Fatalf("sequence gap: %v, want ErrOutOfOrderSequence", err)
	}
	if _, err := appendWait(r, producerBatch(1, 0, 1, "b", "c")); !errors.Is(err, partition.ErrDuplicateSequence) {
		t.Fatalf("written sequences in a new batch: %v, want ErrDuplicateSequence", err)
	}
	if _, err := appendWait(r, producerBatch(1, 0, 2, "c", "c2")); !errors.Is(err, partition.ErrOutOfOrderSequence) {
		t.Fatalf("overlapping sequences: %v, want ErrOutOfOrderSequence", err)
	}
	// Five more batches push b1 out of the producer's recent batches.
	for i := range 5 {
		mustAppend(t, r, producerBatch(1, 0, int32(3+i), fmt.Sprint("d", i)))
	}
	if _, err := appendWait(r, b1); !errors.Is(err, partition.ErrDuplicateSequence) {
		t.Fatalf("a batch older than the recent ones: %v, want ErrDuplicateSequence", err)
	}
	// A new epoch starts afresh; the old one is fenced.
	if base := mustAppend(t, r, producerBatch(1, 1, 0, "e")); base != 8 {
		t.Fatalf("new epoch at %d, want 8", base)
	}
	if _, err := appendWait(r, producerBatch(1, 0, 8, "old")); !errors.Is(err, partition.ErrProducerFenced) {
		t.Fatalf("old epoch: %v, want ErrProducerFenced", err)
	}
	// An unknown producer starts anywhere; a batch without a producer is
	// never checked.
	mustAppend(t, r, producerBatch(2, 0, 100, "f"))
	mustAppend(t, r, batchOf("g"))
	mustAppend(t, r, batchOf("g"))

	want := map[int64]string{0: "a", 1: "b", 2: "c", 3: "d0", 4: "d1", 5: "d2", 6: "d3", 7: "d4", 8: "e", 9: "f", 10: "g", 11: "g"}
	if diff := cmp.Diff(want, values(t, nd.log)); diff != "" {
		t.Fatalf("log (-want +got):\n%s", diff)
	}

	// The state survives a restart: the last batch is still recognized.
	c.stop(nd)
	c.restart(nd)
	c.leader()
	if base := mustAppend(t, nd.r, producerBatch(2, 0, 100, "f")); base != 9 {
		t.Fatalf("retry after a restart: offset %d, want 9", base)
	}
	if _, err := appendWait(nd.r, producerBatch(1, 0, 9, "x")); !errors.Is(err, partition.ErrProducerFenced) {
		t.Fatalf("old epoch after a restart: %v", err)
	}
	if nd.log.End() != 12 {
		t.Fatalf("end %d after retries, want 12", nd.log.End())
	}
}

// TestProducerRetryAfterLeaderKill kills the leader right after handing it
// a batch, retries the batch on the next leader and checks that each batch
// is in the log exactly once.
func TestProducerRetryAfterLeaderKill(t *testing.T) {
	c := newCluster(t, 3, nil)
	seq := int32(0)
	unknown := 0
	for i := range 6 {
		vals := []string{fmt.Sprint(i, "a"), fmt.Sprint(i, "b")}
		b := producerBatch(42, 3, seq, vals...)
		seq += 2
		l := c.leader()
		end := l.log.End()
		pd, err := l.r.Append(b, partition.AcksAll)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			// Let a follower apply it: it is committed, and the retry
			// must find it.
			waitFor(t, "a follower to apply the batch", func() bool {
				for _, f := range c.followers(l) {
					if f.log.End() > end {
						return true
					}
				}
				return false
			})
		}
		c.stop(l)
		if _, err := pd.WaitOffset(); err != nil {
			if !errors.Is(err, partition.ErrOutcomeUnknown) {
				t.Fatalf("wait on the killed leader: %v", err)
			}
			unknown++
		}
		// Retry until a leader answers.
		var base int64
		waitFor(t, "the retry to succeed", func() bool {
			nl := c.leader()
			base, err = appendWait(nl.r, b)
			if err != nil && !isUnknownOrNotLeader(err) {
				t.Fatalf("retry: %v", err)
			}
			return err == nil
		})
		c.restart(l)
		nl := c.leader()
		c.converge(nl)
		got := values(t, nl.log)
		if got[base] != vals[0] || got[base+1] != vals[1] {
			t.Fatalf("retry answered offset %d, log has %q %q there", base, got[base], got[base+1])
		}
	}
	seen := make(map[string]int)
	for _, v := range values(t, c.leader().log) {
		seen[v]++
	}
	for v, n := range seen {
		if n != 1 {
			t.Errorf("%q written %d times", v, n)
		}
	}
	if len(seen) != 12 {
		t.Errorf("%d records, want 12", len(seen))
	}
	t.Logf("%d of 6 outcomes unknown when the leader was killed", unknown)
}

// msgBatch encodes records with message ids and timestamps.
func msgBatch(ts int64, ids ...string) record.Batch {
	var recs []record.Record
	for _, id := range ids {
		r := record.Record{Value: []byte(id), Timestamp: ts}
		if id != "" {
			r.Headers = []record.Header{{Key: partition.MsgIDHeader, Value: []byte(id)}}
		}
		recs = append(recs, r)
	}
	return record.Encode(recs...)
}

func TestMsgIDWindow(t *testing.T) {
	c := newCluster(t, 1, func(c *partition.ReplicaConfig) {
		c.MsgIDWindow = time.Second
		c.MaxMsgIDs = 3
	})
	nd := c.leader()
	check := func(what string, b record.Batch, want int64) {
		t.Helper()
		got, err := appendWait(nd.r, b)
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

	// An idempotent producer's batch that is a duplicate by id still moves
	// the producer's sequence on.
	var pb record.Builder
	pb.SetProducer(5, 0, 0)
	pb.Append(&record.Record{Value: []byte("p"), Timestamp: 1800, Headers: []record.Header{{Key: partition.MsgIDHeader, Value: []byte("job@3")}}})
	check("a producer's batch with a seen id", append(record.Batch(nil), pb.Build()...), 3)
	check("the producer's next batch", producerBatch(5, 0, 1, "q"), 6)

	// Past the window (timestamps more than a second after job@1's), the
	// id is new again.
	check("a later id", msgBatch(2600, "job@4"), 7)
	check("job@1 out of the window", msgBatch(2600, "job@1"), 8)
	// At most three ids are kept: job@3, job@4 and job@1 now; job@5
	// pushes job@3 out.
	check("job@5", msgBatch(2600, "job@5"), 9)
	check("job@3 pushed out", msgBatch(2600, "job@3"), 10)
	check("job@5 again", msgBatch(2600, "job@5"), 9)

	// The window survives a restart.
	c.stop(nd)
	c.restart(nd)
	c.leader()
	check("job@5 after a restart", msgBatch(2700, "job@5"), 9)
}
