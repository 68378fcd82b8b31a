package record

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Magic is the format version this package writes and reads.
const Magic = 1

// Field offsets within the batch header.
const (
	offBaseOffset      = 0
	offLength          = 8
	offMagic           = 12
	offCRC             = 13
	offAttributes      = 17
	offLastOffsetDelta = 19
	offBaseTimestamp   = 23
	offMaxTimestamp    = 31
	offProducerID      = 39
	offProducerEpoch   = 47
	offBaseSequence    = 49
	offRecordCount     = 53

	// HeaderSize is the size of the fixed batch header.
	HeaderSize = 57
	// lengthPrefix is the part of the header before and including the length field.
	lengthPrefix = 12
	// crcStart is where the bytes covered by the CRC begin.
	crcStart = 17
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Batch is an encoded record batch. Its accessors read the fixed header and
// assume the batch has at least HeaderSize bytes; call Validate first on bytes
// from outside.
type Batch []byte

// BaseOffset returns the offset of the batch's first record.
func (b Batch) BaseOffset() int64 { return int64(binary.BigEndian.Uint64(b[offBaseOffset:])) }

// SetBaseOffset writes the offset of the batch's first record. The CRC does
// not cover it, so the batch stays valid.
func (b Batch) SetBaseOffset(o int64) { binary.BigEndian.PutUint64(b[offBaseOffset:], uint64(o)) }

// LastOffset returns the offset of the batch's last record.
func (b Batch) LastOffset() int64 { return b.BaseOffset() + int64(b.LastOffsetDelta()) }

// NextOffset returns the offset after the batch's last record.
func (b Batch) NextOffset() int64 { return b.LastOffset() + 1 }

// LastOffsetDelta returns the record count minus one.
func (b Batch) LastOffsetDelta() int32 { return int32(binary.BigEndian.Uint32(b[offLastOffsetDelta:])) }

// Count returns the number of records in the batch.
func (b Batch) Count() int { return int(int32(binary.BigEndian.Uint32(b[offRecordCount:]))) }

// BaseTimestamp returns the first record's timestamp in ms.
func (b Batch) BaseTimestamp() int64 { return int64(binary.BigEndian.Uint64(b[offBaseTimestamp:])) }

// MaxTimestamp returns the largest record timestamp in the batch, in ms.
func (b Batch) MaxTimestamp() int64 { return int64(binary.BigEndian.Uint64(b[offMaxTimestamp:])) }

// ProducerID returns the idempotent producer id, -1 when none.
func (b Batch) ProducerID() int64 { return int64(binary.BigEndian.Uint64(b[offProducerID:])) }

// ProducerEpoch returns the producer epoch, -1 when none.
func (b Batch) ProducerEpoch() int16 { return int16(binary.BigEndian.Uint16(b[offProducerEpoch:])) }

// BaseSequence returns the sequence number of the first record, -1 when none.
func (b Batch) BaseSequence() int32 { return int32(binary.BigEndian.Uint32(b[offBaseSequence:])) }

// Attributes returns the attribute bits.
func (b Batch) Attributes() uint16 { return binary.BigEndian.Uint16(b[offAttributes:]) }

// CRC returns the stored checksum.
func (b Batch) CRC() uint32 { return binary.BigEndian.Uint32(b[offCRC:]) }

func checksum(b []byte) uint32 { return crc32.Checksum(b[crcStart:], castagnoli) }

// CheckCRC checks b's length field, magic and CRC, without walking its
// records: enough to catch bytes that changed since a full Validate, at a
// fraction of the cost. It returns an error wrapping ErrCorrupt or
// ErrUnsupported.
func (b Batch) CheckCRC() error {
	if len(b) < HeaderSize {
		return fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrCorrupt, len(b), HeaderSize)
	}
	if n := int64(binary.BigEndian.Uint32(b[offLength:])); n != int64(len(b)-lengthPrefix) {
		return fmt.Errorf("%w: length field says %d bytes, batch has %d", ErrCorrupt, n, len(b)-lengthPrefix)
	}
	if m := b[offMagic]; m != Magic {
		return fmt.Errorf("%w: magic %d, want %d", ErrUnsupported, m, Magic)
	}
	if got, want := checksum(b), b.CRC(); got != want {
		return fmt.Errorf("%w: crc %08x, header says %08x", ErrCorrupt, got, want)
	}
	return nil
}

// Validate checks that b is exactly one well-formed batch: its length field,
// magic, CRC, header fields and every record. It returns an error wrapping
// ErrCorrupt or ErrUnsupported.
func (b Batch) Validate() error {
	if err := b.CheckCRC(); err != nil {
		return err
	}
	if c := b.Attributes() & 0x7; c != 0 {
		return fmt.Errorf("%w: compression codec %d", ErrUnsupported, c)
	}
	n := b.Count()
	if n <= 0 {
		return fmt.Errorf("%w: record count %d", ErrCorrupt, n)
	}
	if d := b.LastOffsetDelta(); int(d) != n-1 {
		return fmt.Errorf("%w: last offset delta %d for %d records", ErrCorrupt, d, n)
	}
	it := b.Iter()
	maxTS := int64(-1 << 63)
	i := 0
	for it.Next() {
		r := it.Record()
		if r.Offset-b.BaseOffset() != int64(i) {
			return fmt.Errorf("%w: record %d has offset delta %d", ErrCorrupt, i, r.Offset-b.BaseOffset())
		}
		maxTS = max(maxTS, r.Timestamp)
		i++
	}
	if err := it.Err(); err != nil {
		return err
	}
	if i != n {
		return fmt.Errorf("%w: header says %d records, found %d", ErrCorrupt, n, i)
	}
	if maxTS != b.MaxTimestamp() {
		return fmt.Errorf("%w: max timestamp %d, records say %d", ErrCorrupt, b.MaxTimestamp(), maxTS)
	}
	return nil
}

// Split returns the first batch in buf and the rest. It checks only that the
// length field fits; use Validate to check the batch.
func Split(buf []byte) (Batch, []byte, error) {
	if len(buf) < HeaderSize {
		return nil, nil, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrCorrupt, len(buf), HeaderSize)
	}
	n := int(binary.BigEndian.Uint32(buf[offLength:])) + lengthPrefix
	if n < HeaderSize || n > len(buf) {
		return nil, nil, fmt.Errorf("%w: length field says %d bytes, %d available", ErrCorrupt, n, len(buf))
	}
	return Batch(buf[:n]), buf[n:], nil
}

// Records decodes all records of b into a new slice. It is a convenience for
// tests and small batches; Iter does not allocate per record.
func (b Batch) Records() ([]Record, error) {
	out := make([]Record, 0, b.Count())
	it := b.Iter()
	for it.Next() {
		r := *it.Record()
		r.Headers = append([]Header(nil), r.Headers...)
		out = append(out, r)
	}
	return out, it.Err()
}
