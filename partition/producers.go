package partition

import (
	"cmp"
	"container/list"
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/record"
)

// MsgIDHeader is the record header that names a message for the dedupe
// window (JetStream's Nats-Msg-Id). See Replica for the rule.
const MsgIDHeader = "runnel-msg-id"

const (
	// recentBatches is how many of a producer's last batches keep their
	// offsets, so that a retry of any of them gets its original offset.
	recentBatches = 5
	// maxMsgIDLen is the longest message id the window keeps; a batch with
	// a longer one is not deduplicated by id.
	maxMsgIDLen = 256
	// seqSpace is the size of the sequence number space: sequences are
	// non-negative int32s that wrap from MaxInt32 to 0, as Kafka's do.
	seqSpace = 1 << 31
)

// State keys in the log (package log's StateOp): one per producer, one per
// message id, and the id window's clock.
const (
	keyProducer = 'p' // 'p' id:8 → epoch:2 lastSeq:4 lastUsed:8 n:1 n×(first:4 last:4 base:8)
	keyMsgID    = 'i' // 'i' id → offset:8 ts:8 seq:8
	keyClock    = 'c' // 'c' → clock:8 nextSeq:8
)

// span is one batch of a producer: its sequence numbers and base offset.
type span struct {
	first, last int32
	base        int64
}

// producer is what the partition remembers of one idempotent producer.
type producer struct {
	id      int64
	epoch   int16
	lastSeq int32
	// lastUsed is the raft index of the producer's last batch; the least
	// recently used producer is evicted first.
	lastUsed uint64
	recent   []span // oldest first
	elem     *list.Element
}

// idEntry is one message id in the dedupe window.
type idEntry struct {
	offset, ts int64
	seq        uint64 // insertion order
}

// idRef is a message id in insertion order; it is stale when the id was
// inserted again since (its entry has a newer seq).
type idRef struct {
	id  string
	seq uint64
}

// dedupe is a partition's idempotent producer state and message id window.
// It is changed only by the state machine, and only by entries it applies,
// so every replica holds the same state: eviction goes by raft index and
// the window by record timestamps, never by the local clock. Every change
// goes to the log as state operations in the same Pebble batch as the data.
type dedupe struct {
	maxProducers int
	producers    map[int64]*producer
	lru          list.List // of *producer, least recently used first

	window  int64 // ms
	maxIDs  int
	clock   int64 // largest record timestamp of a batch with ids
	nextSeq uint64
	ids     map[string]*idEntry
	fifo    []idRef // insertion order, from head on
	head    int
}

func newDedupe(maxProducers int, windowMS int64, maxIDs int) *dedupe {
	return &dedupe{
		maxProducers: maxProducers,
		producers:    make(map[int64]*producer),
		window:       windowMS,
		maxIDs:       maxIDs,
		clock:        math.MinInt64,
		ids:          make(map[string]*idEntry),
	}
}

// verdict is what the dedupe state says about a batch before it is written.
type verdict struct {
	// dup is set when the batch was written before, at base.
	dup  bool
	base int64
	// ids are the batch's message ids when every record carries one.
	ids []string
}

// seqAdd returns s+n in sequence space.
func seqAdd(s int32, n int64) int32 { return int32((int64(s) + n) % seqSpace) }

// seqDist returns how far b is after a in sequence space, in [0, 2^31).
func seqDist(a, b int32) int64 { return ((int64(b)-int64(a))%seqSpace + seqSpace) % seqSpace }

// checkProducer checks an idempotent producer's batch against its state.
func (d *dedupe) checkProducer(b record.Batch) (verdict, error) {
	pid := b.ProducerID()
	if pid < 0 {
		return verdict{}, nil
	}
	if err := checkProducerFields(b); err != nil {
		return verdict{}, err
	}
	p := d.producers[pid]
	epoch, first := b.ProducerEpoch(), b.BaseSequence()
	switch {
	case p == nil || epoch > p.epoch:
		// A producer the partition does not know (new, or evicted) or a
		// new epoch: any sequence starts it.
		return verdict{}, nil
	case epoch < p.epoch:
		return verdict{}, fmt.Errorf("%w: producer %d epoch %d, partition has seen epoch %d", ErrProducerFenced, pid, epoch, p.epoch)
	}
	last := seqAdd(first, int64(b.Count())-1)
	for _, s := range p.recent {
		if s.first == first && s.last == last {
			return verdict{dup: true, base: s.base}, nil
		}
	}
	next := seqAdd(p.lastSeq, 1)
	if first == next {
		return verdict{}, nil
	}
	// Sequences up to lastSeq were written; a batch entirely at or before
	// it is an old duplicate, one that starts after next leaves a gap.
	if seqDist(next, first) < seqSpace/2 {
		return verdict{}, fmt.Errorf("%w: producer %d sent sequence %d, expected %d", ErrOutOfOrderSequence, pid, first, next)
	}
	if seqDist(last, p.lastSeq) < seqSpace/2 {
		return verdict{}, fmt.Errorf("%w: producer %d sequences %d to %d were written before", ErrDuplicateSequence, pid, first, last)
	}
	return verdict{}, fmt.Errorf("%w: producer %d sent sequences %d to %d, which overlap the last written, %d", ErrOutOfOrderSequence, pid, first, last, p.lastSeq)
}

// checkProducerFields rejects a batch with a producer id but no epoch or
// sequence number.
func checkProducerFields(b record.Batch) error {
	if b.ProducerEpoch() < 0 || b.BaseSequence() < 0 {
		return fmt.Errorf("%w: producer id %d with epoch %d and base sequence %d", record.ErrCorrupt, b.ProducerID(), b.ProducerEpoch(), b.BaseSequence())
	}
	return nil
}

// msgIDs returns the message ids of b's records when every record carries
// a usable one (at most maxMsgIDLen bytes, not empty), else nil. A batch
// whose first record has none is passed over without decoding the rest.
func msgIDs(b record.Batch) []string {
	var ids []string
	it := b.Iter()
	for it.Next() {
		v, ok := it.Record().Header(MsgIDHeader)
		if !ok || len(v) == 0 || len(v) > maxMsgIDLen {
			return nil
		}
		ids = append(ids, string(v))
	}
	if it.Err() != nil {
		return nil
	}
	return ids
}

// checkIDs looks b's message ids up in the window. A batch is a duplicate
// when every one of its records carries an id and every id is in the
// window; its offset is then the first id's original offset.
func (d *dedupe) checkIDs(b record.Batch) verdict {
	ids := msgIDs(b)
	if ids == nil {
		return verdict{}
	}
	for _, id := range ids {
		if !d.inWindow(id) {
			return verdict{ids: ids}
		}
	}
	return verdict{dup: true, base: d.ids[ids[0]].offset, ids: ids}
}

func (d *dedupe) inWindow(id string) bool {
	e := d.ids[id]
	return e != nil && e.ts >= d.cutoff()
}

// cutoff returns the oldest timestamp still in the window.
func (d *dedupe) cutoff() int64 {
	if d.clock < math.MinInt64+d.window {
		return math.MinInt64
	}
	return d.clock - d.window
}

// recordProducer notes that b, from an idempotent producer, was written at
// base by the entry at index, evicting the least recently used producer
// when there are too many. It returns the state operations.
func (d *dedupe) recordProducer(b record.Batch, base int64, index uint64) []log.StateOp {
	pid := b.ProducerID()
	if pid < 0 {
		return nil
	}
	var ops []log.StateOp
	p := d.producers[pid]
	epoch, first := b.ProducerEpoch(), b.BaseSequence()
	last := seqAdd(first, int64(b.Count())-1)
	if p == nil {
		for len(d.producers) >= d.maxProducers && d.lru.Len() > 0 {
			old := d.lru.Remove(d.lru.Front()).(*producer)
			delete(d.producers, old.id)
			ops = append(ops, log.StateOp{Key: producerKey(old.id)})
		}
		p = &producer{id: pid, epoch: epoch}
		d.producers[pid] = p
		p.elem = d.lru.PushBack(p)
	} else {
		d.lru.MoveToBack(p.elem)
	}
	if epoch != p.epoch {
		p.epoch, p.recent = epoch, nil
	}
	p.lastSeq, p.lastUsed = last, index
	if len(p.recent) == recentBatches {
		p.recent = append(p.recent[:0], p.recent[1:]...)
	}
	p.recent = append(p.recent, span{first: first, last: last, base: base})
	return append(ops, log.StateOp{Key: producerKey(pid), Value: p.encode()})
}

// recordIDs enters ids, the message ids of b's records written from base,
// into the window and drops ids that fell out of it. It returns the state
// operations.
func (d *dedupe) recordIDs(b record.Batch, ids []string, base int64) []log.StateOp {
	if ids == nil {
		return nil
	}
	var ops []log.StateOp
	d.clock = max(d.clock, b.MaxTimestamp())
	it := b.Iter()
	for i := 0; it.Next(); i++ {
		id := ids[i]
		if d.inWindow(id) {
			continue // keeps its original offset
		}
		e := &idEntry{offset: base + int64(i), ts: it.Record().Timestamp, seq: d.nextSeq}
		d.nextSeq++
		d.ids[id] = e
		d.fifo = append(d.fifo, idRef{id: id, seq: e.seq})
		ops = append(ops, log.StateOp{Key: msgIDKey(id), Value: e.encode()})
	}
	// Drop from the oldest insertion while it is out of the window or
	// there are too many. An id out of the window behind a newer one stays
	// until its turn, but inWindow no longer counts it.
	for d.head < len(d.fifo) {
		ref := d.fifo[d.head]
		e := d.ids[ref.id]
		if e == nil || e.seq != ref.seq {
			d.head++ // stale: the id was inserted again later
			continue
		}
		if e.ts >= d.cutoff() && len(d.ids) <= d.maxIDs {
			break
		}
		delete(d.ids, ref.id)
		ops = append(ops, log.StateOp{Key: msgIDKey(ref.id)})
		d.head++
	}
	if d.head > len(d.fifo)/2 {
		d.fifo = append(d.fifo[:0], d.fifo[d.head:]...)
		d.head = 0
	}
	return append(ops, log.StateOp{Key: []byte{keyClock}, Value: d.encodeClock()})
}

// load replaces the state with the one stored in the log's state keys.
func (d *dedupe) load(l *log.Log) error {
	*d = *newDedupe(d.maxProducers, d.window, d.maxIDs)
	var ps []*producer
	err := l.State(func(k, v []byte) error {
		switch k[0] {
		case keyProducer:
			if len(k) != 9 {
				return fmt.Errorf("producer key %x", k)
			}
			p, err := decodeProducer(int64(binary.BigEndian.Uint64(k[1:])), v)
			if err != nil {
				return err
			}
			ps = append(ps, p)
		case keyMsgID:
			if len(v) != 24 {
				return fmt.Errorf("message id %q: %d-byte value", k[1:], len(v))
			}
			e := &idEntry{
				offset: int64(binary.BigEndian.Uint64(v)),
				ts:     int64(binary.BigEndian.Uint64(v[8:])),
				seq:    binary.BigEndian.Uint64(v[16:]),
			}
			d.ids[string(k[1:])] = e
			d.fifo = append(d.fifo, idRef{id: string(k[1:]), seq: e.seq})
		case keyClock:
			if len(v) != 16 {
				return fmt.Errorf("id window clock: %d bytes", len(v))
			}
			d.clock = int64(binary.BigEndian.Uint64(v))
			d.nextSeq = binary.BigEndian.Uint64(v[8:])
		default:
			if isQueueKey(k) {
				return nil // queues.go's
			}
			return fmt.Errorf("unknown state key %x", k)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load producer state: %w", err)
	}
	// Rebuild the orders the state was built in: by last use and by
	// insertion.
	slices.SortFunc(ps, func(a, b *producer) int { return cmp.Compare(a.lastUsed, b.lastUsed) })
	for _, p := range ps {
		d.producers[p.id] = p
		p.elem = d.lru.PushBack(p)
	}
	slices.SortFunc(d.fifo, func(a, b idRef) int { return cmp.Compare(a.seq, b.seq) })
	return nil
}

func producerKey(id int64) []byte {
	return binary.BigEndian.AppendUint64([]byte{keyProducer}, uint64(id))
}

func msgIDKey(id string) []byte { return append([]byte{keyMsgID}, id...) }

func (p *producer) encode() []byte {
	v := make([]byte, 0, 15+16*len(p.recent))
	v = binary.BigEndian.AppendUint16(v, uint16(p.epoch))
	v = binary.BigEndian.AppendUint32(v, uint32(p.lastSeq))
	v = binary.BigEndian.AppendUint64(v, p.lastUsed)
	v = append(v, byte(len(p.recent)))
	for _, s := range p.recent {
		v = binary.BigEndian.AppendUint32(v, uint32(s.first))
		v = binary.BigEndian.AppendUint32(v, uint32(s.last))
		v = binary.BigEndian.AppendUint64(v, uint64(s.base))
	}
	return v
}

func decodeProducer(id int64, v []byte) (*producer, error) {
	if len(v) < 15 || len(v) != 15+16*int(v[14]) || v[14] > recentBatches {
		return nil, fmt.Errorf("producer %d: %d-byte state", id, len(v))
	}
	p := &producer{
		id:       id,
		epoch:    int16(binary.BigEndian.Uint16(v)),
		lastSeq:  int32(binary.BigEndian.Uint32(v[2:])),
		lastUsed: binary.BigEndian.Uint64(v[6:]),
	}
	for i := range int(v[14]) {
		s := v[15+16*i:]
		p.recent = append(p.recent, span{
			first: int32(binary.BigEndian.Uint32(s)),
			last:  int32(binary.BigEndian.Uint32(s[4:])),
			base:  int64(binary.BigEndian.Uint64(s[8:])),
		})
	}
	return p, nil
}

func (e *idEntry) encode() []byte {
	v := make([]byte, 0, 24)
	v = binary.BigEndian.AppendUint64(v, uint64(e.offset))
	v = binary.BigEndian.AppendUint64(v, uint64(e.ts))
	return binary.BigEndian.AppendUint64(v, e.seq)
}

func (d *dedupe) encodeClock() []byte {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(d.clock))
	return binary.BigEndian.AppendUint64(v, d.nextSeq)
}
