package record

import (
	"encoding/binary"
)

// Builder encodes records into a batch. The zero value is ready to use.
type Builder struct {
	buf        []byte
	count      int
	baseTS     int64
	maxTS      int64
	producerID int64
	epoch      int16
	baseSeq    int32
	producer   bool
}

// SetProducer marks the batch as coming from an idempotent producer.
func (b *Builder) SetProducer(id int64, epoch int16, baseSequence int32) {
	b.producerID, b.epoch, b.baseSeq, b.producer = id, epoch, baseSequence, true
}

// Count returns the number of records appended since the last Reset.
func (b *Builder) Count() int { return b.count }

// Len returns the size the batch would have if built now.
func (b *Builder) Len() int {
	if b.count == 0 {
		return HeaderSize
	}
	return len(b.buf)
}

// Reset empties the builder, keeping its buffer.
func (b *Builder) Reset() {
	b.buf = b.buf[:0]
	b.count = 0
	b.producer = false
}

// Size returns an upper bound on the bytes r adds to a batch: exact but for
// the timestamp and offset deltas, which it counts at their widest.
func Size(r *Record) int {
	body := 1 + binary.MaxVarintLen64*2 + fieldSize(r.Key) + fieldSize(r.Value) + varintLen(int64(len(r.Headers)))
	for _, h := range r.Headers {
		body += varintLen(int64(len(h.Key))) + len(h.Key) + fieldSize(h.Value)
	}
	return varintLen(int64(body)) + body
}

func fieldSize(v []byte) int {
	if v == nil {
		return varintLen(-1)
	}
	return varintLen(int64(len(v))) + len(v)
}

func varintLen(v int64) int {
	var tmp [binary.MaxVarintLen64]byte
	return binary.PutVarint(tmp[:], v)
}

// Append adds a record. Its Offset is ignored: records get consecutive
// offset deltas in the order they are appended.
func (b *Builder) Append(r *Record) {
	if b.count == 0 {
		if cap(b.buf) < HeaderSize {
			b.buf = make([]byte, HeaderSize, 4096)
		}
		b.buf = b.buf[:HeaderSize]
		b.baseTS = r.Timestamp
		b.maxTS = r.Timestamp
	}
	b.maxTS = max(b.maxTS, r.Timestamp)

	var tmp [binary.MaxVarintLen64]byte
	body := 1 + varintLen(r.Timestamp-b.baseTS) + varintLen(int64(b.count)) +
		fieldSize(r.Key) + fieldSize(r.Value) + varintLen(int64(len(r.Headers)))
	for _, h := range r.Headers {
		body += varintLen(int64(len(h.Key))) + len(h.Key) + fieldSize(h.Value)
	}
	b.buf = append(b.buf, tmp[:binary.PutVarint(tmp[:], int64(body))]...)
	b.buf = append(b.buf, 0)
	b.buf = binary.AppendVarint(b.buf, r.Timestamp-b.baseTS)
	b.buf = binary.AppendVarint(b.buf, int64(b.count))
	b.buf = appendField(b.buf, r.Key)
	b.buf = appendField(b.buf, r.Value)
	b.buf = binary.AppendVarint(b.buf, int64(len(r.Headers)))
	for _, h := range r.Headers {
		b.buf = binary.AppendVarint(b.buf, int64(len(h.Key)))
		b.buf = append(b.buf, h.Key...)
		b.buf = appendField(b.buf, h.Value)
	}
	b.count++
}

func appendField(buf, v []byte) []byte {
	if v == nil {
		return binary.AppendVarint(buf, -1)
	}
	buf = binary.AppendVarint(buf, int64(len(v)))
	return append(buf, v...)
}

// Build finishes the batch: it writes the header and the CRC and returns the
// batch, which aliases the builder's buffer until the next Append after a
// Reset. Build on an empty builder returns nil.
func (b *Builder) Build() Batch {
	if b.count == 0 {
		return nil
	}
	h := b.buf[:HeaderSize]
	binary.BigEndian.PutUint64(h[offBaseOffset:], 0)
	binary.BigEndian.PutUint32(h[offLength:], uint32(len(b.buf)-lengthPrefix))
	h[offMagic] = Magic
	binary.BigEndian.PutUint16(h[offAttributes:], 0)
	binary.BigEndian.PutUint32(h[offLastOffsetDelta:], uint32(b.count-1))
	binary.BigEndian.PutUint64(h[offBaseTimestamp:], uint64(b.baseTS))
	binary.BigEndian.PutUint64(h[offMaxTimestamp:], uint64(b.maxTS))
	id, epoch, seq := int64(-1), int16(-1), int32(-1)
	if b.producer {
		id, epoch, seq = b.producerID, b.epoch, b.baseSeq
	}
	binary.BigEndian.PutUint64(h[offProducerID:], uint64(id))
	binary.BigEndian.PutUint16(h[offProducerEpoch:], uint16(epoch))
	binary.BigEndian.PutUint32(h[offBaseSequence:], uint32(seq))
	binary.BigEndian.PutUint32(h[offRecordCount:], uint32(b.count))
	binary.BigEndian.PutUint32(h[offCRC:], checksum(b.buf))
	return Batch(b.buf)
}

// Encode builds one batch from recs. It is a convenience for tests and
// one-off writes.
func Encode(recs ...Record) Batch {
	var b Builder
	for i := range recs {
		b.Append(&recs[i])
	}
	out := b.Build()
	return append(Batch(nil), out...)
}
