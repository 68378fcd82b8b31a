package partition

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/record"
)

// BenchmarkFSMApply measures the state machine's side of the raft apply
// path alone, without raft: one committed entry after the other, each a
// batch of 100-byte records, checked (CRC, producer sequence) and applied
// to a Pebble log on disk, as raft's apply goroutine calls it on every
// replica. The store runs without its write-ahead log, as a cluster's
// partition logs do (the raft log is the durable copy), so no fsync is in
// the figure. "idempotent" batches carry a producer id and sequence, as
// runnel's client sends them.
//
//	go test -run '^$' -bench FSMApply ./partition/
func BenchmarkFSMApply(b *testing.B) {
	for _, size := range []int{16 << 10, 1 << 20} {
		for _, idempotent := range []bool{false, true} {
			b.Run(fmt.Sprintf("batch=%dKiB/idempotent=%v", size>>10, idempotent), func(b *testing.B) {
				benchFSMApply(b, size, idempotent)
			})
		}
	}
}

func benchFSMApply(b *testing.B, size int, idempotent bool) {
	s, err := log.Open(b.TempDir(), log.Options{FS: vfs.Default, NoWAL: true, RetentionInterval: -1, Logger: testLogger()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	l, err := s.Log(log.ID{Topic: 1, Partition: 0})
	if err != nil {
		b.Fatal(err)
	}
	f := &fsm{log: l, dedupe: newDedupe(10, 60_000, 10), queues: newQueues(), ws: newWaiters(), logger: testLogger(), failCh: make(chan struct{})}

	rng := rand.New(rand.NewPCG(1, 2))
	value := make([]byte, 100)
	for i := range value {
		value[i] = byte(rng.Uint32())
	}
	// Entries are built before the timer starts: each needs its own
	// sequence number when idempotent.
	entry := func(seq int32) []byte {
		var bl record.Builder
		if idempotent {
			bl.SetProducer(1, 0, seq)
		}
		for bl.Count() == 0 || bl.Len()+110 <= size {
			bl.Append(&record.Record{Value: value, Timestamp: 1})
		}
		return append([]byte{entryBatch}, bl.Build()...)
	}
	first := entry(0)
	count := record.Batch(first[1:]).Count()
	entries := make([][]byte, b.N)
	for i := range entries {
		if idempotent {
			entries[i] = entry(int32(i * count))
		} else {
			entries[i] = first
		}
	}
	b.SetBytes(int64(len(first) - 1))
	b.ResetTimer()
	for i := range b.N {
		if res := f.apply(&raft.Log{Index: uint64(i + 1), Term: 1, Data: entries[i]}); res.err != nil {
			b.Fatal(res.err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*count)/b.Elapsed().Seconds(), "records/s")
}
