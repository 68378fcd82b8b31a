package log

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/runnel-dev/runnel/record"
)

// testOptions returns options for a quiet in-memory store without the
// retention loop.
func testOptions(fs vfs.FS) Options {
	return Options{
		FS:                fs,
		RetentionInterval: -1,
		CacheBytes:        8 << 20,
		memTableSize:      4 << 20,
	}
}

func openStore(t testing.TB, fs vfs.FS, opts Options) *Store {
	t.Helper()
	if opts.FS == nil {
		opts.FS = fs
	}
	s, err := Open("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustLog(t testing.TB, s *Store, id ID) *Log {
	t.Helper()
	l, err := s.Log(id)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// batch encodes one record per timestamp, with values naming tag and the
// record's position.
func batch(tag string, ts ...int64) record.Batch {
	recs := make([]record.Record, len(ts))
	for i, t := range ts {
		recs[i] = record.Record{
			Key:       []byte(fmt.Sprintf("k%d", i)),
			Value:     []byte(fmt.Sprintf("%s-%d", tag, i)),
			Timestamp: t,
		}
	}
	return record.Encode(recs...)
}

func mustAppend(t testing.TB, l *Log, b record.Batch) int64 {
	t.Helper()
	base, err := l.Append(b)
	if err != nil {
		t.Fatal(err)
	}
	return base
}

// readAll reads every record from from to End, skipping records before
// from, and returns the records, copied.
func readAll(t testing.TB, l *Log, from int64, maxBytes int) []record.Record {
	t.Helper()
	var out []record.Record
	end := l.End()
	for from < end {
		bs, err := l.Read(from, maxBytes)
		if err != nil {
			t.Fatalf("read from %d: %v", from, err)
		}
		if len(bs) == 0 {
			t.Fatalf("read from %d < end %d returned nothing", from, end)
		}
		for _, b := range bs {
			recs, err := b.Records()
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if r.Offset >= from {
					out = append(out, r)
				}
			}
			from = b.NextOffset()
		}
	}
	return out
}
