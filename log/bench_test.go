package log

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/runnel-dev/runnel/record"
)

// benchBatch returns a batch of 100-byte records about size bytes long. The
// values are random, so compression gains nothing.
func benchBatch(size int) record.Batch {
	var bld record.Builder
	rng := rand.New(rand.NewPCG(1, 2))
	value := make([]byte, 100)
	for bld.Count() == 0 || bld.Len()+110 <= size {
		for j := range value {
			value[j] = byte(rng.Uint32())
		}
		bld.Append(&record.Record{Value: value, Timestamp: time.Now().UnixMilli()})
	}
	return append(record.Batch(nil), bld.Build()...)
}

// benchStore opens a store on the real file system, the honest place to
// count fsyncs.
func benchStore(b *testing.B, opts Options) *Store {
	b.Helper()
	opts.FS = vfs.Default
	opts.RetentionInterval = -1
	s, err := Open(b.TempDir(), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkAppend appends batches of 100-byte records to one log from
// parallel appenders (parallelism × GOMAXPROCS goroutines). It reports
// records/s, records per WAL fsync and the write amplification
// (bytes written to files per byte appended).
//
//	go test -run - -bench Append -benchtime 2000x ./log/
func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 20} {
		for _, noSync := range []bool{false, true} {
			for _, par := range []int{1, 2, 8} {
				name := fmt.Sprintf("batch=%s/sync=%t/appenders=%d", sizeName(size), !noSync, par*runtime.GOMAXPROCS(0))
				b.Run(name, func(b *testing.B) {
					benchAppend(b, Options{NoSync: noSync}, size, par)
				})
			}
		}
	}
	// Many partitions on one node: keys of different logs interleave in
	// every flush, so compactions rewrite what they cover.
	b.Run("batch=64KiB/sync=true/appenders=16/logs=16", func(b *testing.B) {
		benchAppendLogs(b, Options{}, 64<<10, 8, 16)
	})
	// Pebble tuning alternatives, for comparison with the defaults above.
	b.Run("batch=64KiB/sync=true/appenders=16/logs=16/no-value-separation", func(b *testing.B) {
		benchAppendLogs(b, Options{noValueSeparation: true}, 64<<10, 8, 16)
	})
	b.Run("batch=1MiB/sync=true/appenders=4/no-value-separation", func(b *testing.B) {
		benchAppend(b, Options{noValueSeparation: true}, 1<<20, 2)
	})
	b.Run("batch=1MiB/sync=true/appenders=4/memtable=4MiB", func(b *testing.B) {
		benchAppend(b, Options{memTableSize: 4 << 20}, 1<<20, 2)
	})
}

func sizeName(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}

func benchAppend(b *testing.B, opts Options, size, par int) {
	benchAppendLogs(b, opts, size, par, 1)
}

// benchAppendLogs appends to nlogs logs, each appender taking them in turn.
func benchAppendLogs(b *testing.B, opts Options, size, par, nlogs int) {
	s := benchStore(b, opts)
	logs := make([]*Log, nlogs)
	for i := range logs {
		l, err := s.Log(ID{1, uint32(i)})
		if err != nil {
			b.Fatal(err)
		}
		logs[i] = l
	}
	var turn atomic.Int64
	proto := benchBatch(size)
	b.SetBytes(int64(len(proto)))
	b.SetParallelism(par)
	before := s.Stats()
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		batch := append(record.Batch(nil), proto...) // Append writes the base offset
		l := logs[int(turn.Add(1))%nlogs]
		for pb.Next() {
			if nlogs > 1 {
				l = logs[int(turn.Add(1))%nlogs]
			}
			if _, err := l.Append(batch); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	elapsed := time.Since(start)
	// Count the flush of what the appends left in the memtable.
	if err := s.db.Flush(); err != nil {
		b.Fatal(err)
	}
	after := s.Stats()
	records := float64(after.Records - before.Records)
	b.ReportMetric(records/elapsed.Seconds(), "records/s")
	if syncs := after.Syncs - before.Syncs; syncs > 0 {
		b.ReportMetric(records/float64(syncs), "records/fsync")
	}
	// Write amplification counts the WAL, flushes and the compactions done
	// so far, not those still to come, so it is indicative only.
	b.ReportMetric(float64(after.BytesWritten-before.BytesWritten)/float64(after.Bytes-before.Bytes), "wamp")
	b.ReportMetric(float64(after.WriteStalls-before.WriteStalls), "stalls")
}

// BenchmarkRead replays a log from offset 0: Read and a walk over every
// record. Each iteration replays the whole log (128 MiB), flushed to disk
// files.
//
//	go test -run - -bench Read ./log/
func BenchmarkRead(b *testing.B) {
	const total = 128 << 20
	for _, size := range []int{1 << 10, 1 << 20} {
		b.Run("batch="+sizeName(size), func(b *testing.B) {
			s := benchStore(b, Options{NoSync: true})
			l, err := s.Log(ID{1, 0})
			if err != nil {
				b.Fatal(err)
			}
			proto := benchBatch(size)
			for n := 0; n < total; n += len(proto) {
				if _, err := l.Append(proto); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.db.Flush(); err != nil {
				b.Fatal(err)
			}
			end := l.End()
			b.SetBytes(l.Size())
			start := time.Now()
			b.ResetTimer()
			for range b.N {
				var n int64
				for from := int64(0); from < end; {
					bs, err := l.Read(from, 4<<20)
					if err != nil {
						b.Fatal(err)
					}
					for _, batch := range bs {
						it := batch.Iter()
						for it.Next() {
							n += int64(len(it.Record().Value))
						}
						if err := it.Err(); err != nil {
							b.Fatal(err)
						}
						from = batch.NextOffset()
					}
				}
				if n == 0 {
					b.Fatal("read nothing")
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(end)*float64(b.N)/time.Since(start).Seconds(), "records/s")
		})
	}
}
