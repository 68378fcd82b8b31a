package partition_test

import (
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/partition"
	"github.com/runnel-dev/runnel/record"
)

// BenchmarkPartitionAppend measures a single node's append path for 16 KiB
// batches of 100-byte records: without a producer ("plain"), of an
// idempotent producer ("producer", checked and recorded with the batch),
// and with a message id on every record ("msgid"). The store runs without
// fsync, so that the figures are the CPU cost per batch.
//
//	go test -run '^$' -bench PartitionAppend -benchtime 20000x ./partition/
func BenchmarkPartitionAppend(b *testing.B) {
	for _, kind := range []string{"plain", "producer", "msgid"} {
		b.Run(kind, func(b *testing.B) {
			s, err := log.Open(b.TempDir(), log.Options{RetentionInterval: -1, NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			l, err := s.Log(log.ID{Topic: 1})
			if err != nil {
				b.Fatal(err)
			}
			p := partition.New(l, partition.Options{})
			const perBatch = 160
			value := make([]byte, 100)
			rand.Read(value)
			batches := make([]record.Batch, b.N)
			for i := range batches {
				var bb record.Builder
				if kind == "producer" {
					bb.SetProducer(1, 0, int32(i*perBatch))
				}
				for j := range perBatch {
					r := record.Record{Value: value, Timestamp: int64(i)}
					if kind == "msgid" {
						r.Headers = []record.Header{{Key: partition.MsgIDHeader, Value: fmt.Appendf(nil, "id-%d-%d", i, j)}}
					}
					bb.Append(&r)
				}
				batches[i] = append(record.Batch(nil), bb.Build()...)
			}
			b.SetBytes(int64(perBatch * len(value)))
			b.ResetTimer()
			for _, batch := range batches {
				pd, err := p.Append(batch, partition.AcksAll)
				if err != nil {
					b.Fatal(err)
				}
				if err := pd.Wait(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
