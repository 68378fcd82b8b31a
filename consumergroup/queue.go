package consumergroup

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"iter"
	"slices"
)

// Queue is the lease state of one queue group on one partition: which
// records are leased to a consumer until a deadline, which wait for a
// not-before time, how often each was delivered, and where the group
// stands in the partition.
//
// Like Group it is a synchronous, deterministic state machine: time comes
// in as milliseconds with every call, and the same calls in the same
// order leave the same state, whatever happened before a Restore. A
// replicated owner (package partition) applies the calls from its raft
// log, so every replica holds the same leases.
//
// # Window
//
// Every offset below Start is settled (acked, rejected, or passed by a
// Reset). Offsets from Next on were never looked at. In between, the
// records still unsettled are kept: available (with a not-before time:
// a nack's delay or a deliver-at time) or leased (with a deadline).
// Settled records in the window are simply absent, and Start moves up
// once the oldest unsettled record is settled.
//
// A lease expires when the clock reaches its deadline: the record is then
// available again, with no call needed. The clock is the largest time
// any call brought (Clock), so it never runs backwards when a new leader
// with a slower clock takes over.
//
// # Key ordering
//
// With KeyOrdering, of the unsettled records with the same key only the
// one with the lowest offset may be handed out: at most one record per
// key is in flight, and a record is never delivered before an earlier
// unsettled record with its key. Keys are compared by a 64-bit FNV-1a
// hash; two keys with the same hash are ordered as one.
type Queue struct {
	cfg QueueConfig
	// configured is false for a group a Reset created before any lease:
	// the first lease's configuration becomes the group's.
	configured bool
	start      int64
	next       int64
	clock      int64

	recs map[int64]*queueRec
	// keys holds, per key hash, the unsettled offsets with that key in
	// offset order (KeyOrdering only).
	keys map[uint64][]int64
	// timed holds records waiting for a time (a not-before time or a
	// lease deadline), ready those whose time has come, both with the
	// record's generation: an entry whose generation is no longer the
	// record's is stale and skipped.
	timed heap[timedEntry]
	ready heap[readyEntry]

	// dirty lists the offsets changed since the last Changes, and
	// hdrDirty whether start, next or the clock moved.
	dirty    map[int64]struct{}
	hdrDirty bool
}

// QueueConfig configures a queue group on a partition. It is fixed when
// the group first leases from the partition.
type QueueConfig struct {
	// KeyOrdering allows at most one in-flight record per key.
	KeyOrdering bool
}

// Queue limits. MaxQueueUnsettled bounds the unsettled records a group
// keeps per partition: past it the group hands out only records it
// already holds until some are settled. QueueScanLimit bounds the new
// records one Lease looks at, so that one call stays short however many
// records wait for a deliver-at time or a key.
const (
	MaxQueueUnsettled = 100_000
	QueueScanLimit    = 4096
)

// Errors of Queue.Settle. The owner maps them to status codes.
var (
	// ErrLeaseLost is returned for a settle of a delivery that is no
	// longer the record's latest, or whose lease ended (the record was
	// leased again, released, or the group was rewound).
	ErrLeaseLost = errors.New("queue: lease lost")
	// ErrSettled is returned when the record is already settled; for an
	// ack it means the record is done, perhaps by a retry of this ack.
	ErrSettled = errors.New("queue: record already settled")
	// ErrQueueConfig is returned when a lease asks for a configuration
	// other than the one the group was created with.
	ErrQueueConfig = errors.New("queue: configuration differs from the group's")
)

type recState uint8

const (
	recAvailable recState = 1
	recLeased    recState = 2
)

// queueRec is an unsettled record in the window.
type queueRec struct {
	state recState
	// deliveries counts the leases so far; the latest lease's attempt.
	deliveries uint32
	// at is the not-before time of an available record (0: none) or the
	// deadline of a leased one, in ms.
	at     int64
	hasKey bool
	key    uint64
	gen    uint32
	// lease is the number of the latest lease; 0 for a lease made before
	// leases were numbered.
	lease uint64
}

type timedEntry struct {
	at, off int64
	gen     uint32
}

type readyEntry struct {
	off int64
	gen uint32
}

// QueueRecord is what a Lease learns of a record it has not looked at
// before.
type QueueRecord struct {
	Offset int64
	// Key is the record's key; nil for none.
	Key []byte
	// DeliverAt is the time before which the record is not handed out,
	// in ms; 0 for none.
	DeliverAt int64
}

// QueueLease is one record a Lease handed out.
type QueueLease struct {
	Offset int64
	// Attempt is the record's delivery count, 1 on the first delivery.
	Attempt int
	// Deadline is when the lease ends, in ms.
	Deadline int64
	// Lease is the lease's number, which no other lease of the partition
	// shares: a settle names it so that it never settles a later lease of
	// the record that got the same attempt and deadline.
	Lease uint64
}

// SettleKind is what a consumer does with a delivery.
type SettleKind uint8

// Settle kinds.
const (
	// Ack settles the record: done.
	Ack SettleKind = 1
	// Nack makes the record available again after a delay.
	Nack SettleKind = 2
	// Extend sets the lease's deadline to now plus a duration.
	Extend SettleKind = 3
	// Reject settles the record for good: the consumer dead-lettered it.
	Reject SettleKind = 4
	// Release hands back a lease the consumer never looked at (it was
	// leased ahead and not handed to the application): the record is
	// available at once and its delivery count goes back down by one, so
	// that leasing ahead does not use up a record's deliveries. Settle's
	// Duration carries the released lease's deadline, which must be the
	// record's current one. Settle's Lease tells the lease apart from a
	// later lease that got the same attempt number after a release, even
	// with the same deadline, so that a retried Release never hands back
	// another consumer's lease; without a lease number the attempt and
	// deadline alone do, which fails when both leases got the same
	// deadline.
	Release SettleKind = 5
)

func (k SettleKind) String() string {
	switch k {
	case Ack:
		return "ack"
	case Nack:
		return "nack"
	case Extend:
		return "extend"
	case Reject:
		return "reject"
	case Release:
		return "release"
	}
	return fmt.Sprintf("settle(%d)", uint8(k))
}

// Settle is one settle operation on a delivery.
type Settle struct {
	Kind    SettleKind
	Offset  int64
	Attempt int
	// Duration is a nack's delay or an extension's new lease length, in
	// ms; for a Release, the deadline of the lease released, in ms.
	Duration int64
	// Lease is the settled lease's number (QueueLease.Lease), which must
	// be the record's latest lease's. 0 (a settle from before leases were
	// numbered) matches by Attempt, and for a Release by deadline, alone.
	Lease uint64
}

// NewQueue returns the state of a group that starts at offset start.
func NewQueue(cfg QueueConfig, start int64) *Queue {
	return &Queue{
		cfg:        cfg,
		configured: true,
		start:      start,
		next:       start,
		recs:       make(map[int64]*queueRec),
		keys:       make(map[uint64][]int64),
		timed:      heap[timedEntry]{less: lessTimed},
		ready:      heap[readyEntry]{less: func(a, b readyEntry) bool { return a.off < b.off }},
		dirty:      make(map[int64]struct{}),
		hdrDirty:   true,
	}
}

func lessTimed(a, b timedEntry) bool {
	if a.at != b.at {
		return a.at < b.at
	}
	return a.off < b.off
}

// Config returns the group's configuration.
func (q *Queue) Config() QueueConfig { return q.cfg }

// Start returns the offset below which every record is settled.
func (q *Queue) Start() int64 { return q.start }

// Next returns the first offset the group has not looked at.
func (q *Queue) Next() int64 { return q.next }

// Clock returns the group's time: the largest time a call brought.
func (q *Queue) Clock() int64 { return q.clock }

func (q *Queue) tick(now int64) {
	if now > q.clock {
		q.clock = now
		q.hdrDirty = true
	}
}

// NewQueueAt returns the state of a group whose configuration is not
// known yet, placed at offset start by a rewind before any lease: the
// first CheckConfig sets it.
func NewQueueAt(start int64) *Queue {
	q := NewQueue(QueueConfig{}, start)
	q.configured = false
	return q
}

// CheckConfig returns an error matching ErrQueueConfig when cfg differs
// from the group's. A group created by NewQueueAt takes cfg as its own.
func (q *Queue) CheckConfig(cfg QueueConfig) error {
	if !q.configured {
		q.cfg, q.configured, q.hdrDirty = cfg, true, true
		return nil
	}
	return q.ConfigConflict(cfg)
}

// ConfigConflict is CheckConfig without its side effect: it returns the
// error CheckConfig would, and nil for a group that has no configuration
// yet.
func (q *Queue) ConfigConflict(cfg QueueConfig) error {
	if q.configured && cfg != q.cfg {
		return fmt.Errorf("%w: the group has key ordering %t, the consumer asked for %t", ErrQueueConfig, q.cfg.KeyOrdering, cfg.KeyOrdering)
	}
	return nil
}

// Configured reports whether the group has its configuration: false for a
// group NewQueueAt created until a lease gives it one.
func (q *Queue) Configured() bool { return q.configured }

// Lease hands out up to max records at time now, each leased until now
// plus visibility (ms) and numbered from firstLease up in the order
// returned (the owner keeps the numbers growing, firstLease > 0): first the records in the window that are
// available (lowest offset first), then new records, which recs yields
// from Next on in offset order (a gap in the offsets, where retention
// removed records, is skipped). recs is read only as far as needed: it is
// not asked for a record after the one that fills the lease, reaches
// QueueScanLimit or MaxQueueUnsettled.
func (q *Queue) Lease(now int64, max int, visibility int64, firstLease uint64, recs iter.Seq[QueueRecord]) []QueueLease {
	q.tick(now)
	now = q.clock
	q.promote()
	var out []QueueLease
	for len(out) < max && q.ready.len() > 0 {
		e := q.ready.pop()
		r := q.recs[e.off]
		if r == nil || r.gen != e.gen || !q.head(e.off, r) {
			continue
		}
		out = append(out, q.lease(e.off, r, now, visibility, firstLease+uint64(len(out))))
	}
	if len(out) >= max || recs == nil {
		return out
	}
	if !q.Full() {
		out = q.scan(now, max, visibility, firstLease, recs, out)
	}
	q.advanceStart()
	return out
}

// scan is Lease's look at new records: it appends the leases of those it
// may hand out to out, up to max in all, and stops after QueueScanLimit
// records or when the group is full.
func (q *Queue) scan(now int64, max int, visibility int64, firstLease uint64, recs iter.Seq[QueueRecord], out []QueueLease) []QueueLease {
	scanned := 0
	for rec := range recs {
		if rec.Offset < q.next {
			continue
		}
		scanned++
		q.next = rec.Offset + 1
		q.hdrDirty = true
		r := &queueRec{state: recAvailable}
		if q.cfg.KeyOrdering && rec.Key != nil {
			r.hasKey, r.key = true, hashKey(rec.Key)
			q.keys[r.key] = append(q.keys[r.key], rec.Offset)
		}
		q.recs[rec.Offset] = r
		q.dirty[rec.Offset] = struct{}{}
		if rec.DeliverAt > now {
			r.at = rec.DeliverAt
		}
		switch {
		case !q.head(rec.Offset, r):
			// Waits for the earlier records with its key; queued when it
			// becomes the first.
		case r.at > now:
			q.timed.push(timedEntry{at: r.at, off: rec.Offset, gen: r.gen})
		default:
			out = append(out, q.lease(rec.Offset, r, now, visibility, firstLease+uint64(len(out))))
		}
		if len(out) >= max || scanned >= QueueScanLimit || q.Full() {
			return out
		}
	}
	return out
}

// promote moves the records whose time has come from timed to ready.
func (q *Queue) promote() {
	if q.timed.len() > 2*len(q.recs)+1024 {
		// Mostly stale entries of settled or re-timed records: rebuild.
		q.timed.items = q.timed.items[:0]
		for off, r := range q.recs {
			if q.head(off, r) {
				q.timed.push(timedEntry{at: r.at, off: off, gen: r.gen})
			}
		}
	}
	for q.timed.len() > 0 && q.timed.peek().at <= q.clock {
		e := q.timed.pop()
		r := q.recs[e.off]
		if r == nil || r.gen != e.gen {
			continue
		}
		q.ready.push(readyEntry{off: e.off, gen: e.gen})
	}
}

// head reports whether r, at off, may be handed out as far as key
// ordering goes.
func (q *Queue) head(off int64, r *queueRec) bool {
	if !r.hasKey {
		return true
	}
	return q.keys[r.key][0] == off
}

func (q *Queue) lease(off int64, r *queueRec, now, visibility int64, n uint64) QueueLease {
	r.state = recLeased
	r.deliveries++
	r.at = now + visibility
	r.gen++
	r.lease = n
	q.timed.push(timedEntry{at: r.at, off: off, gen: r.gen})
	q.dirty[off] = struct{}{}
	return QueueLease{Offset: off, Attempt: int(r.deliveries), Deadline: r.at, Lease: n}
}

// Settle applies one settle operation at time now.
func (q *Queue) Settle(now int64, s Settle) error {
	q.tick(now)
	now = q.clock
	r := q.recs[s.Offset]
	if r == nil {
		if s.Offset < q.next {
			return fmt.Errorf("%w: offset %d", ErrSettled, s.Offset)
		}
		return fmt.Errorf("%w: offset %d was not delivered", ErrLeaseLost, s.Offset)
	}
	if s.Attempt != int(r.deliveries) || s.Attempt == 0 {
		return fmt.Errorf("%w: offset %d attempt %d, the record is at attempt %d", ErrLeaseLost, s.Offset, s.Attempt, r.deliveries)
	}
	if s.Lease != 0 && s.Lease != r.lease {
		return fmt.Errorf("%w: offset %d lease %d, the record's latest lease is %d", ErrLeaseLost, s.Offset, s.Lease, r.lease)
	}
	switch s.Kind {
	case Ack, Reject:
		q.settle(s.Offset, r)
		q.advanceStart()
	case Nack:
		r.state = recAvailable
		r.at = now + max(s.Duration, 0)
		r.gen++
		q.dirty[s.Offset] = struct{}{}
		q.timed.push(timedEntry{at: r.at, off: s.Offset, gen: r.gen})
	case Extend:
		if r.state != recLeased {
			return fmt.Errorf("%w: offset %d attempt %d was released", ErrLeaseLost, s.Offset, s.Attempt)
		}
		r.at = now + max(s.Duration, 0)
		r.gen++
		q.dirty[s.Offset] = struct{}{}
		q.timed.push(timedEntry{at: r.at, off: s.Offset, gen: r.gen})
	case Release:
		if r.state != recLeased || r.at != s.Duration {
			return fmt.Errorf("%w: offset %d attempt %d was released or extended", ErrLeaseLost, s.Offset, s.Attempt)
		}
		r.state = recAvailable
		r.deliveries--
		r.at = 0
		r.gen++
		q.dirty[s.Offset] = struct{}{}
		q.timed.push(timedEntry{at: r.at, off: s.Offset, gen: r.gen})
	default:
		return fmt.Errorf("queue: unknown settle kind %d", s.Kind)
	}
	return nil
}

// settle removes r, at off, and lets the next record with its key go.
func (q *Queue) settle(off int64, r *queueRec) {
	delete(q.recs, off)
	q.dirty[off] = struct{}{}
	if !r.hasKey {
		return
	}
	offs := q.keys[r.key]
	i := 0
	for i < len(offs) && offs[i] != off {
		i++
	}
	if i == len(offs) {
		return
	}
	offs = append(offs[:i], offs[i+1:]...)
	if len(offs) == 0 {
		delete(q.keys, r.key)
		return
	}
	q.keys[r.key] = offs
	if i == 0 {
		// The next record of the key may go once its time comes.
		n := q.recs[offs[0]]
		n.gen++
		q.timed.push(timedEntry{at: n.at, off: offs[0], gen: n.gen})
	}
}

// advanceStart moves start up past settled records.
func (q *Queue) advanceStart() {
	if len(q.recs) == 0 && q.start != q.next {
		q.start = q.next
		q.hdrDirty = true
		return
	}
	for q.start < q.next {
		if _, ok := q.recs[q.start]; ok {
			return
		}
		q.start++
		q.hdrDirty = true
	}
}

// Reset moves the group to offset off: every record from off on is
// unsettled and not yet looked at, every one below is settled. Current
// leases are lost.
func (q *Queue) Reset(off int64) {
	for o := range q.recs {
		q.dirty[o] = struct{}{}
	}
	clear(q.recs)
	clear(q.keys)
	q.timed.items = q.timed.items[:0]
	q.ready.items = q.ready.items[:0]
	q.start, q.next = off, off
	q.hdrDirty = true
}

// QueueStats describe a queue group on a partition.
type QueueStats struct {
	Start, Next int64
	// Leased counts records leased and not expired; Delayed records
	// waiting for a not-before time; Ready records available now;
	// Blocked records waiting for an earlier record with their key.
	Leased, Delayed, Ready, Blocked int
	// MaxDeliveries is the largest delivery count of an unsettled record.
	MaxDeliveries int
}

// Stats returns the group's counts at the group's clock.
func (q *Queue) Stats() QueueStats {
	s := QueueStats{Start: q.start, Next: q.next}
	for off, r := range q.recs {
		s.MaxDeliveries = max(s.MaxDeliveries, int(r.deliveries))
		switch {
		case !q.head(off, r):
			s.Blocked++
		case r.at > q.clock && r.state == recLeased:
			s.Leased++
		case r.at > q.clock:
			s.Delayed++
		default:
			s.Ready++
		}
	}
	return s
}

// NextDue returns the earliest time at which a record waiting for a time
// (a not-before time or a lease deadline) becomes available, and false
// when none waits.
func (q *Queue) NextDue() (int64, bool) {
	for q.timed.len() > 0 {
		e := q.timed.peek()
		if r := q.recs[e.off]; r != nil && r.gen == e.gen {
			return e.at, true
		}
		q.timed.pop()
	}
	return 0, false
}

// HasReady reports whether a Lease at time now would hand out a record
// the group already holds.
func (q *Queue) HasReady(now int64) bool {
	if q.ready.len() > 0 {
		return true
	}
	at, ok := q.NextDue()
	return ok && at <= max(now, q.clock)
}

// Full reports whether the group holds as many unsettled records as it
// may, so that a Lease looks at no new records.
func (q *Queue) Full() bool { return len(q.recs) >= MaxQueueUnsettled }

func hashKey(k []byte) uint64 {
	h := fnv.New64a()
	h.Write(k)
	return h.Sum64()
}

// QueueChange is a changed record: its new encoded state, or nil when it
// was settled.
type QueueChange struct {
	Offset int64
	Value  []byte
}

// Changes returns what changed since the last call: the encoded header
// when it changed (else nil) and the records changed, in offset order.
func (q *Queue) Changes() (hdr []byte, recs []QueueChange) {
	if q.hdrDirty {
		hdr = q.encodeHeader()
		q.hdrDirty = false
	}
	if len(q.dirty) == 0 {
		return hdr, nil
	}
	recs = make([]QueueChange, 0, len(q.dirty))
	for off := range q.dirty {
		c := QueueChange{Offset: off}
		if r := q.recs[off]; r != nil {
			c.Value = r.encode()
		}
		recs = append(recs, c)
	}
	slices.SortFunc(recs, func(a, b QueueChange) int { return cmp.Compare(a.Offset, b.Offset) })
	clear(q.dirty)
	return hdr, recs
}

// Encode returns the whole state: the header and every unsettled record.
func (q *Queue) Encode() (hdr []byte, recs []QueueChange) {
	recs = make([]QueueChange, 0, len(q.recs))
	for off, r := range q.recs {
		recs = append(recs, QueueChange{Offset: off, Value: r.encode()})
	}
	slices.SortFunc(recs, func(a, b QueueChange) int { return cmp.Compare(a.Offset, b.Offset) })
	return q.encodeHeader(), recs
}

const queueHeaderVersion = 1

// header: version:1 flags:1 (1: key ordering, 2: configured) start:8 next:8 clock:8
func (q *Queue) encodeHeader() []byte {
	b := make([]byte, 0, 26)
	var flags byte
	if q.cfg.KeyOrdering {
		flags |= 1
	}
	if q.configured {
		flags |= 2
	}
	b = append(b, queueHeaderVersion, flags)
	b = binary.BigEndian.AppendUint64(b, uint64(q.start))
	b = binary.BigEndian.AppendUint64(b, uint64(q.next))
	return binary.BigEndian.AppendUint64(b, uint64(q.clock))
}

// record: state:1 deliveries:4 at:8 hasKey:1 key:8 lease:8. A record
// stored before leases were numbered lacks lease: its lease is 0.
func (r *queueRec) encode() []byte {
	b := make([]byte, 0, 30)
	b = append(b, byte(r.state))
	b = binary.BigEndian.AppendUint32(b, r.deliveries)
	b = binary.BigEndian.AppendUint64(b, uint64(r.at))
	if r.hasKey {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.BigEndian.AppendUint64(b, r.key)
	return binary.BigEndian.AppendUint64(b, r.lease)
}

// DecodeQueue rebuilds a group from its encoded header and records, as
// Changes or Encode returned them.
func DecodeQueue(hdr []byte, recs iter.Seq2[int64, []byte]) (*Queue, error) {
	if len(hdr) != 26 || hdr[0] != queueHeaderVersion {
		return nil, fmt.Errorf("queue header: malformed %d-byte header", len(hdr))
	}
	q := NewQueue(QueueConfig{KeyOrdering: hdr[1]&1 != 0}, int64(binary.BigEndian.Uint64(hdr[2:])))
	q.configured = hdr[1]&2 != 0
	q.next = int64(binary.BigEndian.Uint64(hdr[10:]))
	q.clock = int64(binary.BigEndian.Uint64(hdr[18:]))
	q.hdrDirty = false
	var offs []int64
	for off, v := range recs {
		if (len(v) != 22 && len(v) != 30) || (v[0] != byte(recAvailable) && v[0] != byte(recLeased)) || v[13] > 1 {
			return nil, fmt.Errorf("queue record %d: malformed %d-byte state", off, len(v))
		}
		if off < q.start || off >= q.next {
			return nil, fmt.Errorf("queue record %d outside the window [%d, %d)", off, q.start, q.next)
		}
		r := &queueRec{
			state:      recState(v[0]),
			deliveries: binary.BigEndian.Uint32(v[1:]),
			at:         int64(binary.BigEndian.Uint64(v[5:])),
			hasKey:     v[13] == 1,
			key:        binary.BigEndian.Uint64(v[14:]),
		}
		if len(v) == 30 {
			r.lease = binary.BigEndian.Uint64(v[22:])
		}
		q.recs[off] = r
		offs = append(offs, off)
	}
	slices.Sort(offs)
	for _, off := range offs {
		r := q.recs[off]
		if r.hasKey {
			q.keys[r.key] = append(q.keys[r.key], off)
		}
	}
	for _, off := range offs {
		r := q.recs[off]
		if q.head(off, r) {
			q.timed.push(timedEntry{at: r.at, off: off, gen: r.gen})
		}
	}
	return q, nil
}

// heap is a binary min-heap ordered by less.
type heap[T any] struct {
	items []T
	less  func(a, b T) bool
}

func (h *heap[T]) len() int { return len(h.items) }
func (h *heap[T]) peek() T  { return h.items[0] }

func (h *heap[T]) push(x T) {
	h.items = append(h.items, x)
	i := len(h.items) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(h.items[i], h.items[p]) {
			break
		}
		h.items[i], h.items[p] = h.items[p], h.items[i]
		i = p
	}
}

func (h *heap[T]) pop() T {
	top := h.items[0]
	n := len(h.items) - 1
	h.items[0] = h.items[n]
	var zero T
	h.items[n] = zero
	h.items = h.items[:n]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && h.less(h.items[l], h.items[m]) {
			m = l
		}
		if r < n && h.less(h.items[r], h.items[m]) {
			m = r
		}
		if m == i {
			return top
		}
		h.items[i], h.items[m] = h.items[m], h.items[i]
		i = m
	}
}
