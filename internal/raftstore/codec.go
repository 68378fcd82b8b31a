package raftstore

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/hashicorp/raft"
)

// An entry's value, after its key ('l' group index):
//
//	version:1 type:1 flags:1 term:uvarint
//	[sec:varint nsec:uvarint]       if flags&flagAppendedAt
//	[extLen:uvarint ext:extLen]     if flags&flagExtensions
//	data                            the rest of the value
//
// The index is in the key, not the value. AppendedAt keeps its instant (Unix
// seconds and nanoseconds), not its location or monotonic reading; a zero
// AppendedAt is not stored. Empty Data and Extensions read back as nil.
const (
	codecVersion = 1

	flagAppendedAt = 1 << 0
	flagExtensions = 1 << 1
)

// encodedLen returns the length of l's encoding.
func encodedLen(l *raft.Log) int {
	n := 3 + uvarintLen(l.Term)
	if !l.AppendedAt.IsZero() {
		n += varintLen(l.AppendedAt.Unix()) + uvarintLen(uint64(l.AppendedAt.Nanosecond()))
	}
	if len(l.Extensions) > 0 {
		n += uvarintLen(uint64(len(l.Extensions))) + len(l.Extensions)
	}
	return n + len(l.Data)
}

// encode writes l's encoding into dst, which is exactly encodedLen(l) long.
func encode(dst []byte, l *raft.Log) {
	var flags byte
	if !l.AppendedAt.IsZero() {
		flags |= flagAppendedAt
	}
	if len(l.Extensions) > 0 {
		flags |= flagExtensions
	}
	dst[0], dst[1], dst[2] = codecVersion, byte(l.Type), flags
	n := 3 + binary.PutUvarint(dst[3:], l.Term)
	if flags&flagAppendedAt != 0 {
		n += binary.PutVarint(dst[n:], l.AppendedAt.Unix())
		n += binary.PutUvarint(dst[n:], uint64(l.AppendedAt.Nanosecond()))
	}
	if flags&flagExtensions != 0 {
		n += binary.PutUvarint(dst[n:], uint64(len(l.Extensions)))
		n += copy(dst[n:], l.Extensions)
	}
	copy(dst[n:], l.Data)
}

var (
	errShort   = errors.New("value too short")
	errVersion = errors.New("unknown encoding version")
	errFlags   = errors.New("unknown flags")
	errTime    = errors.New("nanoseconds out of range")
)

// decode fills l from an encoded value, copying Data and Extensions out of
// v, which the caller may reuse afterwards. l.Index is left to the caller.
func decode(v []byte, l *raft.Log) error {
	if len(v) < 3 {
		return errShort
	}
	if v[0] != codecVersion {
		return errVersion
	}
	typ, flags := v[1], v[2]
	if flags&^(flagAppendedAt|flagExtensions) != 0 {
		return errFlags
	}
	v = v[3:]
	term, n := binary.Uvarint(v)
	if n <= 0 {
		return errShort
	}
	v = v[n:]
	var at time.Time
	if flags&flagAppendedAt != 0 {
		sec, n := binary.Varint(v)
		if n <= 0 {
			return errShort
		}
		v = v[n:]
		nsec, n := binary.Uvarint(v)
		if n <= 0 {
			return errShort
		}
		if nsec >= uint64(time.Second) {
			return errTime
		}
		v = v[n:]
		at = time.Unix(sec, int64(nsec))
	}
	var ext []byte
	if flags&flagExtensions != 0 {
		size, n := binary.Uvarint(v)
		if n <= 0 || size > uint64(len(v)-n) {
			return errShort
		}
		ext = append([]byte(nil), v[n:n+int(size)]...)
		v = v[n+int(size):]
	}
	var data []byte
	if len(v) > 0 {
		data = append([]byte(nil), v...)
	}
	*l = raft.Log{
		Term:       term,
		Type:       raft.LogType(typ),
		Data:       data,
		Extensions: ext,
		AppendedAt: at,
	}
	return nil
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func varintLen(x int64) int {
	ux := uint64(x) << 1
	if x < 0 {
		ux = ^ux
	}
	return uvarintLen(ux)
}
