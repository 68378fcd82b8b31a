package record

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func randRecords(rng *rand.Rand, n int) []Record {
	recs := make([]Record, n)
	base := int64(1_700_000_000_000)
	for i := range recs {
		r := Record{Timestamp: base + rng.Int64N(10_000) - 5_000}
		if rng.IntN(3) > 0 {
			r.Key = make([]byte, rng.IntN(20))
		}
		if rng.IntN(10) > 0 {
			r.Value = make([]byte, rng.IntN(300))
			for j := range r.Value {
				r.Value[j] = byte(rng.IntN(256))
			}
		}
		for range rng.IntN(3) {
			h := Header{Key: "h" + string(rune('a'+rng.IntN(26)))}
			if rng.IntN(4) > 0 {
				h.Value = []byte("v")
			}
			r.Headers = append(r.Headers, h)
		}
		recs[i] = r
	}
	return recs
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 17, 500} {
		recs := randRecords(rng, n)
		b := Encode(recs...)
		b.SetBaseOffset(1000)
		if err := b.Validate(); err != nil {
			t.Fatalf("n=%d: Validate: %v", n, err)
		}
		if b.Count() != n || b.LastOffset() != 1000+int64(n-1) || b.NextOffset() != 1000+int64(n) {
			t.Fatalf("n=%d: count %d last %d", n, b.Count(), b.LastOffset())
		}
		got, err := b.Records()
		if err != nil {
			t.Fatal(err)
		}
		want := make([]Record, n)
		maxTS := recs[0].Timestamp
		for i, r := range recs {
			r.Offset = 1000 + int64(i)
			want[i] = r
			maxTS = max(maxTS, r.Timestamp)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("n=%d: records differ (-want +got):\n%s", n, d)
		}
		if b.MaxTimestamp() != maxTS || b.BaseTimestamp() != recs[0].Timestamp {
			t.Fatalf("timestamps: base %d max %d", b.BaseTimestamp(), b.MaxTimestamp())
		}
		if b.ProducerID() != -1 || b.BaseSequence() != -1 {
			t.Fatalf("producer fields set on a plain batch")
		}
	}
}

func TestSizeIsUpperBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var bld Builder
	est := HeaderSize
	for _, r := range randRecords(rng, 300) {
		bld.Append(&r)
		est += Size(&r)
		if bld.Len() > est {
			t.Fatalf("Len %d exceeds estimate %d", bld.Len(), est)
		}
	}
}

func TestBuilderReuseAndProducer(t *testing.T) {
	var bld Builder
	bld.SetProducer(7, 1, 42)
	bld.Append(&Record{Value: []byte("a"), Timestamp: 5})
	b1 := append(Batch(nil), bld.Build()...)
	bld.Reset()
	bld.Append(&Record{Value: []byte("b"), Timestamp: 6})
	b2 := bld.Build()
	if b1.ProducerID() != 7 || b1.ProducerEpoch() != 1 || b1.BaseSequence() != 42 {
		t.Fatalf("producer fields: %d %d %d", b1.ProducerID(), b1.ProducerEpoch(), b1.BaseSequence())
	}
	if b2.ProducerID() != -1 {
		t.Fatalf("Reset kept producer id")
	}
	for _, b := range []Batch{b1, b2} {
		if err := b.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	if bld.Build() == nil || (&Builder{}).Build() != nil {
		t.Fatalf("Build on empty builder should be nil")
	}
}

func TestCorruptionDetected(t *testing.T) {
	b := Encode(Record{Key: []byte("k"), Value: []byte("hello"), Timestamp: 1})
	for i := crcStart; i < len(b); i++ {
		c := append(Batch(nil), b...)
		c[i] ^= 0x40
		if err := c.Validate(); !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
			t.Fatalf("flipping byte %d: Validate = %v, want corruption", i, err)
		}
	}
	if err := b[:len(b)-1].Validate(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated: %v", err)
	}
	// The base offset is outside the CRC.
	c := append(Batch(nil), b...)
	c.SetBaseOffset(99)
	if err := c.Validate(); err != nil {
		t.Fatalf("base offset change broke the batch: %v", err)
	}
}

func TestSplit(t *testing.T) {
	a := Encode(Record{Value: []byte("a")})
	b := Encode(Record{Value: []byte("bb")}, Record{Value: []byte("c")})
	buf := append(append([]byte(nil), a...), b...)
	x, rest, err := Split(buf)
	if err != nil || !bytes.Equal(x, a) {
		t.Fatalf("first: %v", err)
	}
	y, rest, err := Split(rest)
	if err != nil || !bytes.Equal(y, b) || len(rest) != 0 {
		t.Fatalf("second: %v", err)
	}
	if _, _, err := Split(buf[:10]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("short split: %v", err)
	}
}

func FuzzBatch(f *testing.F) {
	f.Add([]byte(Encode(Record{Key: []byte("k"), Value: []byte("v"), Headers: []Header{{Key: "a", Value: []byte("b")}}})))
	f.Add([]byte(Encode(randRecords(rand.New(rand.NewPCG(5, 6)), 5)...)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		b := Batch(data)
		err := b.Validate()
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error not typed: %v", err)
			}
			// Iterating an invalid batch must not panic either.
			if len(b) >= HeaderSize {
				it := b.Iter()
				for it.Next() {
				}
			}
			return
		}
		// A valid batch decodes to records that re-encode to the same records.
		recs, err := b.Records()
		if err != nil || len(recs) != b.Count() {
			t.Fatalf("valid batch fails to decode: %v (%d of %d records)", err, len(recs), b.Count())
		}
		again := Encode(recs...)
		again.SetBaseOffset(b.BaseOffset())
		if err := again.Validate(); err != nil {
			t.Fatalf("re-encoded batch invalid: %v", err)
		}
		recs2, err := again.Records()
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(recs, recs2); d != "" {
			t.Fatalf("re-encoding changed records:\n%s", d)
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	recs := make([]Record, 1000)
	for i := range recs {
		recs[i] = Record{Value: bytes.Repeat([]byte("x"), 100), Timestamp: int64(i)}
	}
	var bld Builder
	b.SetBytes(100 * 1000)
	for b.Loop() {
		bld.Reset()
		for i := range recs {
			bld.Append(&recs[i])
		}
		bld.Build()
	}
}

func BenchmarkDecode(b *testing.B) {
	recs := make([]Record, 1000)
	for i := range recs {
		recs[i] = Record{Value: bytes.Repeat([]byte("x"), 100), Timestamp: int64(i)}
	}
	batch := Encode(recs...)
	b.SetBytes(100 * 1000)
	for b.Loop() {
		if err := batch.Validate(); err != nil {
			b.Fatal(err)
		}
		it := batch.Iter()
		for it.Next() {
		}
	}
}
