package log

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/runnel-dev/runnel/record"
)

// model is the trivial log the store must behave like: the stored batches
// in order, and the offsets around them.
type model struct {
	start, end int64
	batches    []record.Batch
}

func (m *model) size() int64 {
	var n int64
	for _, b := range m.batches {
		n += int64(len(b))
	}
	return n
}

func (m *model) append(b record.Batch) int64 {
	b = append(record.Batch(nil), b...)
	b.SetBaseOffset(m.end)
	m.batches = append(m.batches, b)
	m.end = b.NextOffset()
	return b.BaseOffset()
}

func (m *model) dropFirst() {
	m.batches = m.batches[1:]
	if len(m.batches) > 0 {
		m.start = m.batches[0].BaseOffset()
	} else {
		m.start = m.end
	}
}

func (m *model) retain(r Retention, now time.Time) {
	cutoff := now.UnixMilli() - r.MaxAge.Milliseconds()
	for len(m.batches) > 0 {
		tooBig := r.MaxBytes > 0 && m.size() > r.MaxBytes
		tooOld := r.MaxAge > 0 && m.batches[0].MaxTimestamp() < cutoff
		if !tooBig && !tooOld {
			return
		}
		m.dropFirst()
	}
}

// read returns what Read(from, maxBytes) must return.
func (m *model) read(from int64, maxBytes int) ([]record.Batch, error) {
	if from < m.start || from > m.end {
		return nil, &OutOfRangeError{Offset: from, Start: m.start, End: m.end}
	}
	var out []record.Batch
	total := 0
	for _, b := range m.batches {
		if b.NextOffset() <= from {
			continue
		}
		if len(out) > 0 && total+len(b) > maxBytes {
			break
		}
		out = append(out, b)
		total += len(b)
	}
	return out, nil
}

func (m *model) offsetForTime(ms int64) int64 {
	for _, b := range m.batches {
		recs, _ := b.Records()
		for _, r := range recs {
			if r.Timestamp >= ms {
				return r.Offset
			}
		}
	}
	return m.end
}

// batchBytes compares batches as strings: much faster than element by
// element.
var batchBytes = cmp.Comparer(func(a, b record.Batch) bool { return string(a) == string(b) })

// TestModel runs random operations against a store and the model and
// compares them after each one.
func TestModel(t *testing.T) {
	for seed := range uint64(12) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			runModel(t, seed, 1000)
		})
	}
}

func runModel(t *testing.T, seed uint64, ops int) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	fs := vfs.NewMem()
	now := time.UnixMilli(1_000_000)
	opts := testOptions(fs)
	opts.Now = func() time.Time { return now }
	opts.indexInterval = []int64{1, 300, 2000}[rng.IntN(3)]
	if seed%2 == 1 {
		// Flush often, so reads, retention and recovery meet sstables and
		// blob files, not just the memtable.
		opts.memTableSize = 256 << 10
	}
	s := openStore(t, fs, opts)
	defer func() { s.Close() }()

	ids := []ID{{1, 0}, {1, 1}, {2, 0}}
	models := make(map[ID]*model)
	for _, id := range ids {
		models[id] = &model{}
	}
	ts := now.UnixMilli() - 1000 // producer clock, drifts and jumps

	randomBatch := func() record.Batch {
		n := 1 + rng.IntN(6)
		recs := make([]record.Record, n)
		for i := range recs {
			switch rng.IntN(10) {
			case 0:
				ts -= int64(rng.IntN(200)) // a producer clock going back
			default:
				ts += int64(rng.IntN(20))
			}
			recs[i] = record.Record{
				Key:       fmt.Appendf(nil, "k%d", rng.IntN(100)),
				Value:     make([]byte, rng.IntN(200)+rng.IntN(2)*rng.IntN(3000)),
				Timestamp: ts,
			}
		}
		return record.Encode(recs...)
	}

	for op := range ops {
		id := ids[rng.IntN(len(ids))]
		m := models[id]
		l := mustLog(t, s, id)
		var what string
		switch r := rng.IntN(100); {
		case r < 45:
			b := randomBatch()
			want := m.append(b)
			got, err := l.Append(b)
			if err != nil {
				t.Fatalf("op %d: append: %v", op, err)
			}
			what = fmt.Sprintf("append %d records at %d", b.Count(), got)
			if got != want {
				t.Fatalf("op %d: %s, want base %d", op, what, want)
			}
		case r < 70:
			from := m.start - 2 + rng.Int64N(m.end-m.start+5)
			maxBytes := rng.IntN(2000)
			what = fmt.Sprintf("read from %d max %d", from, maxBytes)
			want, wantErr := m.read(from, maxBytes)
			got, err := l.Read(from, maxBytes)
			if diff := cmp.Diff(fmt.Sprint(wantErr), fmt.Sprint(err)); diff != "" {
				t.Fatalf("op %d: %s: error (-want +got):\n%s", op, what, diff)
			}
			if diff := cmp.Diff(want, got, batchBytes); diff != "" {
				t.Fatalf("op %d: %s (-want +got):\n%s", op, what, diff)
			}
		case r < 82:
			ms := ts - 500 + rng.Int64N(600)
			what = fmt.Sprintf("offset for time %d", ms)
			got, err := l.OffsetForTime(ms)
			if err != nil {
				t.Fatalf("op %d: %s: %v", op, what, err)
			}
			if want := m.offsetForTime(ms); got != want {
				t.Fatalf("op %d: %s = %d, want %d", op, what, got, want)
			}
		case r < 88:
			ret := Retention{MaxBytes: m.size() - rng.Int64N(m.size()+1)}
			if rng.IntN(3) == 0 {
				ret = Retention{MaxAge: time.Duration(rng.IntN(1500)) * time.Millisecond}
			}
			now = now.Add(time.Duration(rng.IntN(100)) * time.Millisecond)
			what = fmt.Sprintf("retention %+v", ret)
			m.retain(ret, now)
			l.SetRetention(ret)
			if err := l.EnforceRetention(); err != nil {
				t.Fatalf("op %d: %s: %v", op, what, err)
			}
			l.SetRetention(Retention{})
		case r < 95:
			what = "reopen"
			if err := s.Close(); err != nil {
				t.Fatalf("op %d: close: %v", op, err)
			}
			s = openStore(t, fs, opts)
			l = mustLog(t, s, id)
		case r < 97:
			what = "drop"
			if err := s.Drop(id); err != nil {
				t.Fatalf("op %d: drop: %v", op, err)
			}
			if _, err := l.Append(randomBatch()); !errors.Is(err, ErrClosed) {
				t.Fatalf("op %d: append to dropped log: %v", op, err)
			}
			*m = model{}
			l = mustLog(t, s, id)
		default:
			what = "size check"
		}
		if l.Start() != m.start || l.End() != m.end || l.Size() != m.size() {
			t.Fatalf("op %d (%s): start %d end %d size %d, want %d %d %d",
				op, what, l.Start(), l.End(), l.Size(), m.start, m.end, m.size())
		}
	}
	// Finally, every log reads back whole.
	for _, id := range ids {
		m := models[id]
		l := mustLog(t, s, id)
		got, err := l.Read(m.start, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(m.batches, got, batchBytes, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("log %s final read (-want +got):\n%s", id, diff)
		}
	}
}
