package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Controller commands are JSON, except committed offsets: they are most
// of the controller's entries, and every node decodes each one, so they
// have a binary form (decoding their JSON was a tenth of the coordinator's
// CPU). A JSON command starts with '{'; a binary one with its kind.
//
// The offsets form, after the kind byte: the number of ops, then per op
// the group, a flags byte (force, delete) and the number of offsets, then
// per offset its "topic/partition" key and the offset. Counts and lengths
// are uvarints, offsets varints.
const commandOffsets byte = 1

const (
	opForce  byte = 1 << 0
	opDelete byte = 1 << 1
)

// maxDecodedOps bounds the counts a corrupt entry can claim before the
// decoder finds it short.
const maxDecodedOps = 1 << 24

// encodeOffsets is the binary form of a commit-offsets command.
func encodeOffsets(c *commitOffsetsCmd) []byte {
	n := 1 + binary.MaxVarintLen64
	for _, op := range c.Ops {
		n += 2*binary.MaxVarintLen64 + len(op.Group) + 1
		for k := range op.Offsets {
			n += 2*binary.MaxVarintLen64 + len(k)
		}
	}
	b := make([]byte, 0, n)
	b = append(b, commandOffsets)
	b = binary.AppendUvarint(b, uint64(len(c.Ops)))
	for _, op := range c.Ops {
		b = appendString(b, op.Group)
		var flags byte
		if op.Force {
			flags |= opForce
		}
		if op.Delete {
			flags |= opDelete
		}
		b = append(b, flags)
		b = binary.AppendUvarint(b, uint64(len(op.Offsets)))
		for k, off := range op.Offsets {
			b = appendString(b, k)
			b = binary.AppendVarint(b, off)
		}
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeOffsets reads encodeOffsets' form, kind byte included.
func decodeOffsets(data []byte) (*commitOffsetsCmd, error) {
	d := offsetsDecoder{b: data[1:]}
	nops := d.count()
	c := &commitOffsetsCmd{Ops: make([]offsetOp, 0, min(nops, 1024))}
	for i := uint64(0); i < nops && d.err == nil; i++ {
		op := offsetOp{Group: d.string()}
		flags := d.byte()
		op.Force, op.Delete = flags&opForce != 0, flags&opDelete != 0
		if n := d.count(); n > 0 {
			op.Offsets = make(map[string]int64, min(n, 1024))
			for j := uint64(0); j < n && d.err == nil; j++ {
				k := d.string()
				op.Offsets[k] = d.varint()
			}
		}
		c.Ops = append(c.Ops, op)
	}
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%d bytes after the last op", len(d.b))
	}
	if d.err != nil {
		return nil, fmt.Errorf("decode committed offsets: %w", d.err)
	}
	return c, nil
}

type offsetsDecoder struct {
	b   []byte
	err error
}

var errShortOffsets = errors.New("entry ends early")

func (d *offsetsDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShortOffsets
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *offsetsDecoder) count() uint64 {
	v := d.uvarint()
	if v > maxDecodedOps || v > uint64(len(d.b)) {
		// Each op and offset takes at least a byte.
		if d.err == nil {
			d.err = fmt.Errorf("count %d is more than the entry holds", v)
		}
		return 0
	}
	return v
}

func (d *offsetsDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShortOffsets
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *offsetsDecoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = errShortOffsets
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *offsetsDecoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) || n > math.MaxInt32 {
		d.err = errShortOffsets
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
