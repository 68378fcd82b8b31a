package record

import (
	"encoding/binary"
	"fmt"
)

// Iter walks the records of a batch:
//
//	it := b.Iter()
//	for it.Next() {
//		r := it.Record()
//	}
//	if err := it.Err(); err != nil { ... }
//
// The Record returned is reused by the next call to Next.
type Iter struct {
	b        Batch
	pos      int
	left     int
	baseOff  int64
	baseTS   int64
	rec      Record
	err      error
	headers  []Header
	recIndex int
}

// Iter returns an iterator over b's records. b must hold at least a header.
func (b Batch) Iter() Iter {
	if len(b) < HeaderSize {
		return Iter{err: fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrCorrupt, len(b), HeaderSize)}
	}
	return Iter{b: b, pos: HeaderSize, left: b.Count(), baseOff: b.BaseOffset(), baseTS: b.BaseTimestamp()}
}

// Record returns the current record.
func (it *Iter) Record() *Record { return &it.rec }

// Err returns the first decoding error, wrapping ErrCorrupt.
func (it *Iter) Err() error { return it.err }

// Next decodes the next record and reports whether there is one.
func (it *Iter) Next() bool {
	if it.err != nil || it.left <= 0 {
		if it.err == nil && it.pos != len(it.b) && it.b != nil {
			it.err = fmt.Errorf("%w: %d bytes after the last record", ErrCorrupt, len(it.b)-it.pos)
		}
		return false
	}
	if err := it.decode(); err != nil {
		it.err = fmt.Errorf("%w: record %d: %v", ErrCorrupt, it.recIndex, err)
		return false
	}
	it.left--
	it.recIndex++
	return true
}

type decodeError string

func (e decodeError) Error() string { return string(e) }

const (
	errShort    = decodeError("truncated")
	errVarint   = decodeError("bad varint")
	errLength   = decodeError("bad length")
	errOverflow = decodeError("record overruns its length")
)

func (it *Iter) decode() error {
	buf := it.b[it.pos:]
	n, k := binary.Varint(buf)
	if k <= 0 {
		return errVarint
	}
	if n < 1 || n > int64(len(buf)-k) {
		return errLength
	}
	rec := buf[k : k+int(n)]
	it.pos += k + int(n)

	p := 1 // skip attributes
	tsDelta, err := varint(rec, &p)
	if err != nil {
		return err
	}
	offDelta, err := varint(rec, &p)
	if err != nil {
		return err
	}
	key, err := bytesField(rec, &p)
	if err != nil {
		return err
	}
	value, err := bytesField(rec, &p)
	if err != nil {
		return err
	}
	nh, err := varint(rec, &p)
	if err != nil {
		return err
	}
	if nh < 0 || nh > int64(len(rec)) {
		return errLength
	}
	it.headers = it.headers[:0]
	for range nh {
		hk, err := bytesField(rec, &p)
		if err != nil {
			return err
		}
		hv, err := bytesField(rec, &p)
		if err != nil {
			return err
		}
		it.headers = append(it.headers, Header{Key: string(hk), Value: hv})
	}
	if p != len(rec) {
		return errOverflow
	}
	it.rec = Record{
		Key:       key,
		Value:     value,
		Timestamp: it.baseTS + tsDelta,
		Offset:    it.baseOff + offDelta,
	}
	if len(it.headers) > 0 {
		it.rec.Headers = it.headers
	}
	return nil
}

func varint(b []byte, p *int) (int64, error) {
	if *p >= len(b) {
		return 0, errShort
	}
	v, k := binary.Varint(b[*p:])
	if k <= 0 {
		return 0, errVarint
	}
	*p += k
	return v, nil
}

// bytesField reads a length-prefixed field; length -1 means nil.
func bytesField(b []byte, p *int) ([]byte, error) {
	n, err := varint(b, p)
	if err != nil {
		return nil, err
	}
	if n == -1 {
		return nil, nil
	}
	if n < 0 || n > int64(len(b)-*p) {
		return nil, errLength
	}
	v := b[*p : *p+int(n) : *p+int(n)]
	*p += int(n)
	return v, nil
}
