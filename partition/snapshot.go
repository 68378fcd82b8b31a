package partition

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/hashicorp/raft"
	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/record"
)

// Snapshots hold no copy of the partition's batches until one has to leave
// the node.
//
// A snapshot is a header followed, when it is inline, by the batches
// [start, end) as the log stores them:
//
//	magic "RNS1"  bodyLen:4  body  crc32c(body):4  [batches…]
//	body: flags:1 applied:8 start:8 end:8 n:4 n×(keyLen:2 key valueLen:4 value)
//
// flags bit 0 says the batches follow (inline). applied is the log's applied
// raft index, start and end its bounds, and the key/value pairs the
// producer state (the log's state keys) at the snapshot.
//
// The state machine's Persist writes only the header (not inline, and
// without state) into a raft.FileSnapshotStore. When raft opens that
// snapshot to send it to a follower, snapshotStore.Open streams a fresh
// header, inline, with the log's current applied index, end and state
// (taken together, so at or past the snapshot) and start moved up to the
// log's current start, then the batches read from the live log in chunks.
// Below that end the log never changes, except that retention may drop
// batches from its front, which the stream skips. The follower's state
// machine skips the entries between the snapshot's index and the stream's
// when raft sends them.
// A follower receives the stream through the store's sink, so it lands in
// the file in full, and its state machine's Restore reads it from there:
// one batch in memory at a time.
//
// A follower that already holds a prefix of the batches gets only the rest:
// before sending, the leader asks it where its log ends, durably
// (ReplicaConfig.PeerLogEnd), and moves the stream's start up to there
// with flags bit 1 (partial) set. Restore then keeps the follower's batches
// and appends the ones after its end; it refuses, without touching the
// log, a partial snapshot that starts after the log's end, and raft sends
// the snapshot again. Batches below the end are the same on every replica:
// a replica's log holds only committed entries, applied in order.

const (
	snapshotMagic  = "RNS1"
	flagInline     = 1
	flagPartial    = 2
	maxStateKeyLen = 1<<16 - 1
	// maxSnapshotBatch bounds one batch read from a snapshot stream.
	maxSnapshotBatch = 256 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// header is a snapshot's header.
type header struct {
	inline     bool
	partial    bool // the batches continue the receiver's log (inline only)
	applied    uint64
	start, end int64
	state      []log.StateOp
}

func (h header) encode() []byte {
	body := make([]byte, 0, 1+8+8+8+4+64*len(h.state))
	var flags byte
	if h.inline {
		flags |= flagInline
	}
	if h.partial {
		flags |= flagPartial
	}
	body = append(body, flags)
	body = binary.BigEndian.AppendUint64(body, h.applied)
	body = binary.BigEndian.AppendUint64(body, uint64(h.start))
	body = binary.BigEndian.AppendUint64(body, uint64(h.end))
	body = binary.BigEndian.AppendUint32(body, uint32(len(h.state)))
	for _, op := range h.state {
		body = binary.BigEndian.AppendUint16(body, uint16(len(op.Key)))
		body = append(body, op.Key...)
		body = binary.BigEndian.AppendUint32(body, uint32(len(op.Value)))
		body = append(body, op.Value...)
	}
	out := make([]byte, 0, 8+len(body)+4)
	out = append(out, snapshotMagic...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(body)))
	out = append(out, body...)
	return binary.BigEndian.AppendUint32(out, crc32.Checksum(body, castagnoli))
}

// readHeader reads a header from r and returns it with its bytes.
func readHeader(r io.Reader) (header, []byte, error) {
	var h header
	pre := make([]byte, 8)
	if _, err := io.ReadFull(r, pre); err != nil {
		return h, nil, fmt.Errorf("snapshot header: %w", err)
	}
	if string(pre[:4]) != snapshotMagic {
		return h, nil, fmt.Errorf("snapshot header: magic %q, want %q", pre[:4], snapshotMagic)
	}
	n := binary.BigEndian.Uint32(pre[4:])
	// Read what arrives rather than trust n with an allocation.
	rest, err := io.ReadAll(io.LimitReader(r, int64(n)+4))
	if err != nil {
		return h, nil, fmt.Errorf("snapshot header: %w", err)
	}
	if len(rest) != int(n)+4 {
		return h, nil, fmt.Errorf("snapshot header: %w", io.ErrUnexpectedEOF)
	}
	raw := append(pre, rest...)
	body := raw[8 : 8+n]
	if got, want := crc32.Checksum(body, castagnoli), binary.BigEndian.Uint32(raw[8+n:]); got != want {
		return h, nil, fmt.Errorf("snapshot header: crc %08x, want %08x", got, want)
	}
	short := errors.New("snapshot header: truncated")
	if len(body) < 29 {
		return h, nil, short
	}
	if f := body[0] &^ (flagInline | flagPartial); f != 0 {
		return h, nil, fmt.Errorf("snapshot header: unknown flags %#x: the snapshot is from a newer version", f)
	}
	h.inline = body[0]&flagInline != 0
	h.partial = body[0]&flagPartial != 0
	h.applied = binary.BigEndian.Uint64(body[1:])
	h.start = int64(binary.BigEndian.Uint64(body[9:]))
	h.end = int64(binary.BigEndian.Uint64(body[17:]))
	count := binary.BigEndian.Uint32(body[25:])
	p := body[29:]
	for range count {
		if len(p) < 2 {
			return h, nil, short
		}
		kl := int(binary.BigEndian.Uint16(p))
		if len(p) < 2+kl+4 {
			return h, nil, short
		}
		key := p[2 : 2+kl]
		vl := int(binary.BigEndian.Uint32(p[2+kl:]))
		p = p[2+kl+4:]
		if len(p) < vl {
			return h, nil, short
		}
		h.state = append(h.state, log.StateOp{Key: key, Value: p[:vl:vl]})
		p = p[vl:]
	}
	if len(p) != 0 || h.start > h.end || h.start < 0 || (h.partial && !h.inline) {
		return h, nil, errors.New("snapshot header: malformed")
	}
	return h, raw, nil
}

// readBatch reads the next batch of a snapshot stream into buf's memory,
// or returns io.EOF at the end.
func readBatch(r io.Reader, buf []byte) (record.Batch, error) {
	var pre [12]byte
	if n, err := io.ReadFull(r, pre[:]); err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("snapshot batch: %w", io.ErrUnexpectedEOF)
	}
	n := 12 + int(binary.BigEndian.Uint32(pre[8:]))
	if n < record.HeaderSize || n > maxSnapshotBatch {
		return nil, fmt.Errorf("snapshot batch: %w: %d bytes", record.ErrCorrupt, n)
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	copy(buf, pre[:])
	if _, err := io.ReadFull(r, buf[12:]); err != nil {
		return nil, fmt.Errorf("snapshot batch: %w", io.ErrUnexpectedEOF)
	}
	return record.Batch(buf), nil
}

// errPartialGap refuses a partial snapshot whose batches do not continue
// the log; the log is left as it was.
var errPartialGap = errors.New("the partial snapshot does not continue the log")

// restoreLog replaces l's content with the snapshot whose header is hdr and
// whose batches r holds, then makes it durable. A partial snapshot keeps
// l's batches and appends those after l's end.
func restoreLog(l *log.Log, hdr header, r io.Reader) error {
	if !hdr.inline {
		return errors.New("restore: the snapshot holds no batches")
	}
	if hdr.partial {
		return restorePartial(l, hdr, r)
	}
	if err := l.Reset(hdr.start); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := appendBatches(l, r); err != nil {
		return err
	}
	return finishRestore(l, hdr, nil)
}

// appendBatches appends the batches r holds after l's end, skipping those
// below it.
func appendBatches(l *log.Log, r io.Reader) error {
	end := l.End()
	var buf []byte
	for {
		b, err := readBatch(r, buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("restore at %d: %w", end, err)
		}
		buf = b
		if b.NextOffset() <= end {
			continue
		}
		if b.BaseOffset() < end {
			return fmt.Errorf("restore: a snapshot batch spans offsets %d to %d, across the log's end %d", b.BaseOffset(), b.NextOffset(), end)
		}
		if err := l.AppendRaw(b); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		end = b.NextOffset()
	}
}

// restorePartial appends a partial snapshot's batches after l's end,
// skipping those l has (its state machine may have applied more since the
// leader asked), and replaces l's state with the snapshot's.
func restorePartial(l *log.Log, hdr header, r io.Reader) error {
	end := l.End()
	switch {
	case end < hdr.start:
		return fmt.Errorf("restore: %w: its batches start at offset %d, the log ends at %d", errPartialGap, hdr.start, end)
	case end > hdr.end:
		return fmt.Errorf("restore: %w: it ends at offset %d, the log already at %d", errPartialGap, hdr.end, end)
	case l.Applied() > hdr.applied:
		return fmt.Errorf("restore: %w: it is at raft index %d, the log already at %d", errPartialGap, hdr.applied, l.Applied())
	}
	if err := appendBatches(l, r); err != nil {
		return err
	}
	// The snapshot's state replaces the log's: keys it lacks go.
	keep := make(map[string]bool, len(hdr.state))
	for _, op := range hdr.state {
		keep[string(op.Key)] = true
	}
	var drop []log.StateOp
	if err := l.State(func(key, _ []byte) error {
		if !keep[string(key)] {
			drop = append(drop, log.StateOp{Key: bytes.Clone(key)})
		}
		return nil
	}); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return finishRestore(l, hdr, drop)
}

// finishRestore checks that l ends where hdr says, records hdr's applied
// index and state (after deleting the keys in drop), and syncs l.
func finishRestore(l *log.Log, hdr header, drop []log.StateOp) error {
	if l.End() != hdr.end {
		return fmt.Errorf("restore: batches end at %d, snapshot says %d", l.End(), hdr.end)
	}
	ops := append(drop, hdr.state...)
	if _, err := l.ApplyAt(hdr.applied, nil, func(int64) []log.StateOp { return ops }); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := l.Sync(); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return nil
}

// snapshotStore is raft's snapshot store for one partition: a
// raft.FileSnapshotStore whose Open streams a header-only snapshot's
// batches from the log.
type snapshotStore struct {
	files *raft.FileSnapshotStore
	log   *log.Log
}

var _ raft.SnapshotStore = (*snapshotStore)(nil)

func (s *snapshotStore) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	return s.files.Create(version, index, term, configuration, configurationIndex, trans)
}

func (s *snapshotStore) List() ([]*raft.SnapshotMeta, error) { return s.files.List() }

// Open returns the snapshot as a follower's Restore reads it: an inline
// snapshot (one received from a leader) as stored, a header-only one (taken
// here) with its batches streamed from the log. The meta's Size is the
// stream's.
func (s *snapshotStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := s.files.Open(id)
	if err != nil {
		return nil, nil, err
	}
	br := bufio.NewReader(rc)
	hdr, raw, err := readHeader(br)
	if err != nil {
		rc.Close()
		return nil, nil, fmt.Errorf("snapshot %s: %w", id, err)
	}
	if hdr.inline && !(hdr.partial && s.log.Applied() >= hdr.applied) {
		return meta, readCloser{io.MultiReader(bytes.NewReader(raw), br), rc}, nil
	}
	// A partial snapshot holds only what its follower lacked. Once
	// restored, the log has all of it: send it to others from the log,
	// as one taken here.
	rc.Close()
	if hdr.partial {
		hdr.partial, hdr.start = false, 0
	}
	stream, size, err := newLogStream(s.log, hdr)
	if err != nil {
		return nil, nil, fmt.Errorf("snapshot %s: %w", id, err)
	}
	m := *meta
	m.Size = size
	return &m, stream, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// streamChunk is how many bytes of batches a logStream reads at a time.
const streamChunk = 1 << 20

// logStream streams an inline snapshot: the header, then the batches
// [start, end) read from the log in chunks.
type logStream struct {
	log       *log.Log
	hdr       header         // as streamed
	sent      bool           // Read was called
	buf       []byte         // unread bytes of the header or current batch
	batches   []record.Batch // read but not yet streamed
	next, end int64          // offsets still to read
	left      int64          // batch bytes still to stream
}

// newLogStream returns the stream for header-only snapshot hdr and its
// size.
func newLogStream(l *log.Log, hdr header) (*logStream, int64, error) {
	// The stream carries the log as it is now, which is at or past the
	// snapshot: its applied index, end and state, taken together. A
	// follower's state machine skips the entries up to that index when
	// raft sends them after the snapshot's.
	applied, end, state, err := l.AppliedState()
	if err != nil {
		return nil, 0, err
	}
	if applied < hdr.applied || end < hdr.end {
		return nil, 0, fmt.Errorf("the log (applied %d, end %d) is behind the snapshot (applied %d, end %d)", applied, end, hdr.applied, hdr.end)
	}
	hdr.applied, hdr.end, hdr.state = applied, end, state
	// Retention may have moved the start since, even past the snapshot's
	// end: the snapshot then holds no batches, and the follower's log
	// starts at the end, where the entries after the snapshot continue.
	hdr.start = min(max(hdr.start, l.Start()), hdr.end)
	hdr.inline = true
	var n int64
	if hdr.start < hdr.end {
		if n, err = l.RangeSize(hdr.start, hdr.end); err != nil {
			return nil, 0, err
		}
	}
	raw := hdr.encode()
	return &logStream{log: l, hdr: hdr, buf: raw, next: hdr.start, end: hdr.end, left: n}, int64(len(raw)) + n, nil
}

// continueFrom makes s a partial snapshot for a follower whose log ends,
// durably, at offset from: it streams only the batches after from. It
// returns the stream's new size, or false, leaving s as it was, if s was
// read from already or from is not the offset of a batch in s's range.
func (s *logStream) continueFrom(from int64) (int64, bool) {
	if s.sent || from <= s.hdr.start || from > s.hdr.end {
		return 0, false
	}
	var n int64
	if from < s.hdr.end {
		var err error
		if n, err = s.log.RangeSize(from, s.hdr.end); err != nil {
			return 0, false
		}
	}
	s.hdr.start, s.hdr.partial = from, true
	raw := s.hdr.encode()
	s.buf, s.next, s.left = raw, from, n
	return int64(len(raw)) + n, true
}

func (s *logStream) Read(p []byte) (int, error) {
	s.sent = true
	for len(s.buf) == 0 {
		if len(s.batches) > 0 {
			s.buf, s.batches = s.batches[0], s.batches[1:]
			s.left -= int64(len(s.buf))
			continue
		}
		if s.next >= s.end {
			if s.left != 0 {
				return 0, fmt.Errorf("snapshot stream: %d bytes short", s.left)
			}
			return 0, io.EOF
		}
		bs, err := s.log.Read(s.next, streamChunk)
		if err != nil {
			// Retention dropped batches the stream had yet to send; raft
			// retries with a new stream later.
			return 0, fmt.Errorf("snapshot stream: %w", err)
		}
		for _, b := range bs {
			if b.BaseOffset() >= s.end {
				break
			}
			if b.BaseOffset() != s.next {
				return 0, fmt.Errorf("snapshot stream: batch at %d, want %d", b.BaseOffset(), s.next)
			}
			s.batches = append(s.batches, b)
			s.next = b.NextOffset()
		}
		if len(s.batches) == 0 {
			return 0, fmt.Errorf("snapshot stream: no batch at %d", s.next)
		}
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	return n, nil
}

func (s *logStream) Close() error { return nil }
