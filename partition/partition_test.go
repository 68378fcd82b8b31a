package partition_test

import (
	"errors"
	"testing"

	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/partition"
	"github.com/runnel-dev/runnel/record"
)

func openPartition(t *testing.T, opts partition.Options) *partition.Partition {
	t.Helper()
	s, err := log.Open(t.TempDir(), log.Options{RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	l, err := s.Log(log.ID{Topic: 1})
	if err != nil {
		t.Fatal(err)
	}
	return partition.New(l, opts)
}

func TestAppendOrdersAndWaits(t *testing.T) {
	p := openPartition(t, partition.Options{})
	var pending []partition.Pending
	for i := range 10 {
		pd, err := p.Append(record.Encode(record.Record{Value: []byte{byte(i)}}, record.Record{}), partition.AcksAll)
		if err != nil {
			t.Fatal(err)
		}
		if pd.Base != int64(2*i) {
			t.Fatalf("append %d got base %d, want %d", i, pd.Base, 2*i)
		}
		pending = append(pending, pd)
	}
	for _, pd := range pending {
		if err := pd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if p.End() != 20 {
		t.Fatalf("end %d after waiting for every append, want 20", p.End())
	}
}

func TestBacklogBound(t *testing.T) {
	b := record.Encode(record.Record{Value: make([]byte, 600)})
	p := openPartition(t, partition.Options{MaxPendingBytes: int64(len(b)) + 10})
	first, err := p.Append(b, partition.AcksAll)
	if err != nil {
		t.Fatal(err)
	}
	// The first batch is not waited for yet, so it still counts as pending.
	_, err = p.Append(record.Encode(record.Record{Value: make([]byte, 600)}), partition.AcksAll)
	var be *partition.BacklogError
	if !errors.As(err, &be) || !errors.Is(err, partition.ErrBacklogFull) || be.RetryAfter <= 0 {
		t.Fatalf("second append over the bound: %v, want a BacklogError with a retry delay", err)
	}
	if err := first.Wait(); err != nil {
		t.Fatal(err)
	}
	third, err := p.Append(record.Encode(record.Record{Value: make([]byte, 600)}), partition.AcksAll)
	if err != nil {
		t.Fatalf("append after the backlog drained: %v", err)
	}
	if err := third.Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptBatchLeavesNothing(t *testing.T) {
	flip := func(b record.Batch) record.Batch {
		b[len(b)-1] ^= 1
		return b
	}
	producer := func() record.Batch {
		var bb record.Builder
		bb.SetProducer(1, 0, 0)
		bb.Append(&record.Record{Value: []byte("abc")})
		return append(record.Batch(nil), bb.Build()...)
	}
	msgID := record.Encode(record.Record{Value: []byte("abc"), Headers: []record.Header{{Key: partition.MsgIDHeader, Value: []byte("id-1")}}})
	for _, tc := range []struct {
		name string
		b    record.Batch
	}{
		{"plain", flip(record.Encode(record.Record{Value: []byte("abc")}))},
		{"shorter than a header", record.Encode(record.Record{Value: []byte("abc")})[:10]},
		{"producer", flip(producer())},
		{"message id", flip(msgID)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := openPartition(t, partition.Options{})
			if _, err := p.Append(tc.b, partition.AcksAll); !errors.Is(err, record.ErrCorrupt) {
				t.Fatalf("corrupt batch: %v", err)
			}
			if p.End() != 0 {
				t.Fatalf("end %d after a rejected batch", p.End())
			}
			// The rejected batch holds no pending bytes.
			pd, err := p.Append(record.Encode(record.Record{Value: []byte("abc")}), partition.AcksAll)
			if err != nil {
				t.Fatal(err)
			}
			if err := pd.Wait(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
