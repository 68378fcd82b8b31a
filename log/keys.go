package log

import (
	"encoding/binary"
	"fmt"
)

// Key prefixes. Each key space is ordered by log, then by offset (or by
// running max timestamp and offset for the time index), so one seek finds
// any position in a log. See doc.go for the layout.
const (
	prefixMeta    = 'm'
	prefixBatch   = 'b'
	prefixData    = 'd'
	prefixTime    = 't'
	prefixApplied = 'a'
	prefixState   = 's'
)

// allPrefixes lists every key space a log has, for Drop and IDs.
var allPrefixes = []byte{prefixData, prefixBatch, prefixTime, prefixMeta, prefixApplied, prefixState}

// logPrefixLen is the length of a prefix byte plus an ID.
const logPrefixLen = 1 + 8

const (
	dataKeyLen  = logPrefixLen + 8
	batchKeyLen = logPrefixLen + 8
	timeKeyLen  = logPrefixLen + 8 + 8
	metaKeyLen  = logPrefixLen

	// batchValueLen is next offset, max timestamp, size and cumulative
	// bytes of a batch index entry.
	batchValueLen = 8 + 8 + 4 + 8
	// timeValueLen is next offset and cumulative bytes of a time index entry.
	timeValueLen = 8 + 8
	// metaValueLen is start offset and cumulative bytes before it.
	metaValueLen = 8 + 8
	// appliedValueLen is the applied index.
	appliedValueLen = 8
)

// ID names one log: a partition of a topic. Topic is the numeric id the
// broker assigns; a name reused after a delete gets a new id.
type ID struct {
	Topic     uint32
	Partition uint32
}

// String returns "topic/partition".
func (id ID) String() string { return fmt.Sprintf("%d/%d", id.Topic, id.Partition) }

func appendLogPrefix(dst []byte, prefix byte, id ID) []byte {
	dst = append(dst, prefix)
	dst = binary.BigEndian.AppendUint32(dst, id.Topic)
	return binary.BigEndian.AppendUint32(dst, id.Partition)
}

// logBounds returns the smallest key of the log's key space under prefix and
// the key just past it.
func logBounds(prefix byte, id ID) (lower, upper []byte) {
	lower = appendLogPrefix(make([]byte, 0, logPrefixLen), prefix, id)
	upper = append([]byte(nil), lower...)
	// Increment the ID part as a big-endian integer. The prefix byte stays,
	// or becomes the next prefix when the ID is all ones.
	for i := len(upper) - 1; i >= 0; i-- {
		upper[i]++
		if upper[i] != 0 {
			break
		}
	}
	return lower, upper
}

func offsetKey(prefix byte, id ID, off int64) []byte {
	k := appendLogPrefix(make([]byte, 0, logPrefixLen+8), prefix, id)
	return binary.BigEndian.AppendUint64(k, uint64(off))
}

func dataKey(id ID, base int64) []byte  { return offsetKey(prefixData, id, base) }
func batchKey(id ID, base int64) []byte { return offsetKey(prefixBatch, id, base) }
func metaKey(id ID) []byte              { return appendLogPrefix(make([]byte, 0, metaKeyLen), prefixMeta, id) }
func appliedKey(id ID) []byte {
	return appendLogPrefix(make([]byte, 0, logPrefixLen), prefixApplied, id)
}

// stateKey returns the key of the log's state entry k.
func stateKey(id ID, k []byte) []byte {
	return append(appendLogPrefix(make([]byte, 0, logPrefixLen+len(k)), prefixState, id), k...)
}

// timeKey returns a time index key. Timestamps are signed, so the sign bit is
// flipped to keep big-endian order.
func timeKey(id ID, runMax, base int64) []byte {
	k := appendLogPrefix(make([]byte, 0, timeKeyLen), prefixTime, id)
	k = binary.BigEndian.AppendUint64(k, encodeTime(runMax))
	return binary.BigEndian.AppendUint64(k, uint64(base))
}

// timeSeekKey returns the smallest time index key with running max ms.
func timeSeekKey(id ID, ms int64) []byte {
	k := appendLogPrefix(make([]byte, 0, timeKeyLen), prefixTime, id)
	return binary.BigEndian.AppendUint64(k, encodeTime(ms))
}

func encodeTime(ms int64) uint64 { return uint64(ms) ^ (1 << 63) }
func decodeTime(u uint64) int64  { return int64(u ^ (1 << 63)) }

// keyOffset decodes the offset at the end of a data or batch index key.
func keyOffset(k []byte) (int64, error) {
	if len(k) != dataKeyLen {
		return 0, fmt.Errorf("key %x: %d bytes, want %d", k, len(k), dataKeyLen)
	}
	return int64(binary.BigEndian.Uint64(k[logPrefixLen:])), nil
}

// batchEntry is the batch index entry of one stored batch. It lets recovery
// and retention work without reading batch bytes.
type batchEntry struct {
	base, next int64
	maxTS      int64
	size       int64
	// cum is the log's cumulative appended bytes up to and including this
	// batch; the bytes stored from batch a to batch b are
	// b.cum - a.cum + a.size.
	cum int64
}

func (e batchEntry) encode() []byte {
	v := make([]byte, 0, batchValueLen)
	v = binary.BigEndian.AppendUint64(v, uint64(e.next))
	v = binary.BigEndian.AppendUint64(v, uint64(e.maxTS))
	v = binary.BigEndian.AppendUint32(v, uint32(e.size))
	return binary.BigEndian.AppendUint64(v, uint64(e.cum))
}

func decodeBatchEntry(k, v []byte) (batchEntry, error) {
	base, err := keyOffset(k)
	if err != nil {
		return batchEntry{}, err
	}
	if len(v) != batchValueLen {
		return batchEntry{}, fmt.Errorf("batch index entry %d: %d bytes, want %d", base, len(v), batchValueLen)
	}
	e := batchEntry{
		base:  base,
		next:  int64(binary.BigEndian.Uint64(v)),
		maxTS: int64(binary.BigEndian.Uint64(v[8:])),
		size:  int64(binary.BigEndian.Uint32(v[16:])),
		cum:   int64(binary.BigEndian.Uint64(v[20:])),
	}
	if e.next <= e.base || e.size <= 0 {
		return batchEntry{}, fmt.Errorf("batch index entry %d: next %d, size %d", base, e.next, e.size)
	}
	return e, nil
}

// timeEntry is a time index entry: every batch up to and including base has
// a max timestamp of at most runMax.
type timeEntry struct {
	runMax, base, next, cum int64
}

func (e timeEntry) encode() []byte {
	v := make([]byte, 0, timeValueLen)
	v = binary.BigEndian.AppendUint64(v, uint64(e.next))
	return binary.BigEndian.AppendUint64(v, uint64(e.cum))
}

func decodeTimeEntry(k, v []byte) (timeEntry, error) {
	if len(k) != timeKeyLen || len(v) != timeValueLen {
		return timeEntry{}, fmt.Errorf("time index entry %x: %d-byte key, %d-byte value", k, len(k), len(v))
	}
	return timeEntry{
		runMax: decodeTime(binary.BigEndian.Uint64(k[logPrefixLen:])),
		base:   int64(binary.BigEndian.Uint64(k[logPrefixLen+8:])),
		next:   int64(binary.BigEndian.Uint64(v)),
		cum:    int64(binary.BigEndian.Uint64(v[8:])),
	}, nil
}

// meta is the per-log metadata record, written by retention: the first
// offset still stored, which is also the end offset when retention removed
// every batch, and the cumulative bytes before it.
type meta struct {
	start, cumStart int64
}

func (m meta) encode() []byte {
	v := make([]byte, 0, metaValueLen)
	v = binary.BigEndian.AppendUint64(v, uint64(m.start))
	return binary.BigEndian.AppendUint64(v, uint64(m.cumStart))
}

func decodeMeta(v []byte) (meta, error) {
	if len(v) != metaValueLen {
		return meta{}, fmt.Errorf("metadata: %d bytes, want %d", len(v), metaValueLen)
	}
	return meta{
		start:    int64(binary.BigEndian.Uint64(v)),
		cumStart: int64(binary.BigEndian.Uint64(v[8:])),
	}, nil
}
