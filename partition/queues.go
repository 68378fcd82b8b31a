package partition

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runnel-dev/runnel/consumergroup"
	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/record"
)

// DeliverAtHeader is the record header that holds a record's deliver-at
// time, RFC 3339 or Unix milliseconds: queue groups do not hand the record
// out before it.
const DeliverAtHeader = "runnel-deliver-at"

// ParseDeliverAt parses a DeliverAtHeader value into Unix milliseconds.
func ParseDeliverAt(v []byte) (int64, error) {
	if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
		return n, nil
	}
	t, err := time.Parse(time.RFC3339Nano, string(v))
	if err != nil {
		return 0, fmt.Errorf("%s header %q: want RFC 3339 or Unix milliseconds", DeliverAtHeader, v)
	}
	return t.UnixMilli(), nil
}

// MaxQueueGroupLen bounds a queue group's name.
const MaxQueueGroupLen = 200

// Queue request errors.
var (
	// ErrQueueGroupNotFound is returned for a queue group that never
	// leased from the partition.
	ErrQueueGroupNotFound = errors.New("partition: queue group not found")
	// ErrInvalidQueueRequest is matched by errors for a malformed queue
	// request: a bad group name, count or duration.
	ErrInvalidQueueRequest = errors.New("partition: invalid queue request")
)

// LeaseRequest asks for records of a queue group.
type LeaseRequest struct {
	Group string
	// Config is the group's configuration; it must match the one the
	// group was created with on this partition.
	Config consumergroup.QueueConfig
	// Max is the most records to lease; Visibility how long each lease
	// lasts.
	Max        int
	Visibility time.Duration
}

func (r LeaseRequest) check() error {
	if err := checkGroupName(r.Group); err != nil {
		return err
	}
	if r.Max <= 0 || r.Max > 10_000 {
		return fmt.Errorf("%w: queue group %q: lease of %d records; ask for 1 to 10000", ErrInvalidQueueRequest, r.Group, r.Max)
	}
	if r.Visibility < time.Millisecond || r.Visibility > 12*time.Hour {
		return fmt.Errorf("%w: queue group %q: visibility %s; use 1ms to 12h", ErrInvalidQueueRequest, r.Group, r.Visibility)
	}
	return nil
}

func checkGroupName(g string) error {
	if g == "" || len(g) > MaxQueueGroupLen {
		return fmt.Errorf("%w: queue group name %q: use 1 to %d bytes", ErrInvalidQueueRequest, g, MaxQueueGroupLen)
	}
	return nil
}

// checkSettles checks settle operations of group.
func checkSettles(group string, ops []consumergroup.Settle) error {
	if err := checkGroupName(group); err != nil {
		return err
	}
	if len(ops) == 0 || len(ops) > 10_000 {
		return fmt.Errorf("%w: queue group %q: %d settle operations; send 1 to 10000", ErrInvalidQueueRequest, group, len(ops))
	}
	for _, op := range ops {
		if op.Kind < consumergroup.Ack || op.Kind > consumergroup.Release {
			return fmt.Errorf("%w: queue group %q: unknown settle kind %d", ErrInvalidQueueRequest, group, op.Kind)
		}
		if op.Kind == consumergroup.Release {
			// Duration is the released lease's deadline.
			if op.Duration <= 0 {
				return fmt.Errorf("%w: queue group %q: release of offset %d without its lease's deadline", ErrInvalidQueueRequest, group, op.Offset)
			}
			continue
		}
		if op.Duration < 0 || op.Duration > (12*time.Hour).Milliseconds() {
			return fmt.Errorf("%w: queue group %q: %s of offset %d by %dms; use 0 to 12h", ErrInvalidQueueRequest, group, op.Kind, op.Offset, op.Duration)
		}
	}
	return nil
}

// QueueGroupInfo describes a queue group on a partition.
type QueueGroupInfo struct {
	Group  string
	Config consumergroup.QueueConfig
	consumergroup.QueueStats
}

// Queue state keys in the log (package log's StateOp), next to the
// producer state's (producers.go).
const (
	keyQueue       = 'Q' // 'Q' group → header (consumergroup.Queue)
	keyQueueRec    = 'R' // 'R' len(group):1 group offset:8 → record state
	keyQueueLeases = 'L' // 'L' → the last lease number:8
)

func queueKey(group string) []byte { return append([]byte{keyQueue}, group...) }

func queueRecKey(group string, off int64) []byte {
	k := make([]byte, 0, 2+len(group)+8)
	k = append(k, keyQueueRec, byte(len(group)))
	k = append(k, group...)
	return binary.BigEndian.AppendUint64(k, uint64(off))
}

// isQueueKey reports whether a state key belongs to the queue groups.
func isQueueKey(k []byte) bool {
	return len(k) > 0 && (k[0] == keyQueue || k[0] == keyQueueRec || k[0] == keyQueueLeases)
}

// leasesOp persists the last lease number n.
func leasesOp(n uint64) log.StateOp {
	return log.StateOp{Key: []byte{keyQueueLeases}, Value: binary.BigEndian.AppendUint64(nil, n)}
}

// queueOp is one queue operation: the body of a queue raft entry, or a
// call on a single node.
type queueOp struct {
	kind  byte
	now   int64 // ms, stamped by the leader
	group string
	// lease
	cfg        consumergroup.QueueConfig
	max        int
	visibility int64
	floor      int64 // the leader's log start: where a new group starts
	// settle
	settles []consumergroup.Settle
	// reset
	offset int64
}

// entryQueue is the entry type (fsm.go) of a queue operation.
const entryQueue byte = 3

// Queue operation kinds. opSettle is a settle from before leases were
// numbered, still decoded (its settles have lease number 0) and still
// written when no settle names a lease, so that a replica of that
// version can apply it.
const (
	opLease   byte = 1
	opSettle  byte = 2
	opReset   byte = 3
	opDelete  byte = 4
	opSettleN byte = 5
)

// encode: kind:1 now:8 groupLen:1 group, then
// lease: flags:1 max:4 visibility:8 floor:8; settle: n:4 n×(kind:1 offset:8
// attempt:4 duration:8), with lease:8 after each for opSettleN; reset:
// offset:8. A settle op is encoded as opSettleN when a settle names a
// lease.
func (o *queueOp) encode() []byte {
	kind := o.kind
	if kind == opSettle && slices.ContainsFunc(o.settles, func(s consumergroup.Settle) bool { return s.Lease != 0 }) {
		kind = opSettleN
	}
	b := make([]byte, 0, 32+len(o.group)+29*len(o.settles))
	b = append(b, entryQueue, kind)
	b = binary.BigEndian.AppendUint64(b, uint64(o.now))
	b = append(b, byte(len(o.group)))
	b = append(b, o.group...)
	switch o.kind {
	case opLease:
		var flags byte
		if o.cfg.KeyOrdering {
			flags = 1
		}
		b = append(b, flags)
		b = binary.BigEndian.AppendUint32(b, uint32(o.max))
		b = binary.BigEndian.AppendUint64(b, uint64(o.visibility))
		b = binary.BigEndian.AppendUint64(b, uint64(o.floor))
	case opSettle:
		b = binary.BigEndian.AppendUint32(b, uint32(len(o.settles)))
		for _, s := range o.settles {
			b = append(b, byte(s.Kind))
			b = binary.BigEndian.AppendUint64(b, uint64(s.Offset))
			b = binary.BigEndian.AppendUint32(b, uint32(s.Attempt))
			b = binary.BigEndian.AppendUint64(b, uint64(s.Duration))
			if kind == opSettleN {
				b = binary.BigEndian.AppendUint64(b, s.Lease)
			}
		}
	case opReset:
		b = binary.BigEndian.AppendUint64(b, uint64(o.offset))
	}
	return b
}

// decodeQueueOp decodes an entry's data after the entry type byte.
func decodeQueueOp(d []byte) (*queueOp, error) {
	bad := func() (*queueOp, error) { return nil, errors.New("malformed queue entry") }
	if len(d) < 10 {
		return bad()
	}
	o := &queueOp{kind: d[0], now: int64(binary.BigEndian.Uint64(d[1:]))}
	n := int(d[9])
	d = d[10:]
	if len(d) < n {
		return bad()
	}
	o.group, d = string(d[:n]), d[n:]
	switch o.kind {
	case opLease:
		if len(d) != 21 {
			return bad()
		}
		o.cfg.KeyOrdering = d[0]&1 != 0
		o.max = int(binary.BigEndian.Uint32(d[1:]))
		o.visibility = int64(binary.BigEndian.Uint64(d[5:]))
		o.floor = int64(binary.BigEndian.Uint64(d[13:]))
	case opSettle, opSettleN:
		size := 21
		if o.kind == opSettleN {
			size = 29
		}
		if len(d) < 4 {
			return bad()
		}
		c := int(binary.BigEndian.Uint32(d))
		d = d[4:]
		if len(d) != size*c {
			return bad()
		}
		o.settles = make([]consumergroup.Settle, c)
		for i := range o.settles {
			s := d[size*i:]
			o.settles[i] = consumergroup.Settle{
				Kind:     consumergroup.SettleKind(s[0]),
				Offset:   int64(binary.BigEndian.Uint64(s[1:])),
				Attempt:  int(binary.BigEndian.Uint32(s[9:])),
				Duration: int64(binary.BigEndian.Uint64(s[13:])),
			}
			if size == 29 {
				o.settles[i].Lease = binary.BigEndian.Uint64(s[21:])
			}
		}
		o.kind = opSettle
	case opReset:
		if len(d) != 8 {
			return bad()
		}
		o.offset = int64(binary.BigEndian.Uint64(d))
	case opDelete:
		if len(d) != 0 {
			return bad()
		}
	default:
		return bad()
	}
	return o, nil
}

// queueResult is what a queue operation returned.
type queueResult struct {
	leases []consumergroup.QueueLease
	// settles holds one error (nil: done) per settle operation.
	settles []error
	err     error
}

// batchCache keeps the batches of the last log read, so that queue leases
// that move through the log a few records at a time read it from Pebble
// once. The log's batches never change below its end, so the cache holds
// what a read would return; a snapshot restore clears it.
type batchCache struct {
	mu      sync.Mutex
	batches []record.Batch
}

// read returns batches from the one holding offset off on, as log.Read
// does.
func (c *batchCache) read(l *log.Log, off int64) ([]record.Batch, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if start := l.Start(); off < start {
		// Retention removed it since the cache was filled.
		return nil, &log.OutOfRangeError{Offset: off, Start: start, End: l.End()}
	}
	for i, b := range c.batches {
		if b.BaseOffset() <= off && off < b.NextOffset() {
			return c.batches[i:], nil
		}
	}
	bs, err := l.Read(off, queueCacheBytes)
	if err != nil {
		return nil, err
	}
	c.batches = bs
	return bs, nil
}

func (c *batchCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batches = nil
}

// queueCacheBytes is how much of the log a batchCache holds.
const queueCacheBytes = 256 << 10

// queues are the queue groups of one partition. The state machine (or a
// single node's Partition) changes them under mu; readers take mu too.
type queues struct {
	mu     sync.Mutex
	groups map[string]*consumergroup.Queue
	// changed is closed, and replaced, whenever an operation may have
	// made records available: a settle or a reset. Long-polling leases
	// wait on it.
	changed chan struct{}

	// scans serve the state machine's reads of new records (under mu),
	// one per group that leased, so that groups at different offsets do
	// not evict each other's; deliver serves the reads of leased records
	// for the answer.
	scans   map[string]*scanCache
	deliver batchCache

	// leases is the last lease number handed out on the partition (0:
	// none). It only grows, also across group deletions, so that a
	// number names one lease for good.
	leases uint64

	// parked counts the leases waiting in a long poll, for tests.
	parked atomic.Int32
}

func newQueues() *queues {
	return &queues{groups: make(map[string]*consumergroup.Queue), scans: make(map[string]*scanCache), changed: make(chan struct{})}
}

// apply applies op, reading new records from l, and returns the result
// and the state operations that persist it.
func (qs *queues) apply(l *log.Log, op *queueOp) (queueResult, []log.StateOp) {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	g := qs.groups[op.group]
	var res queueResult
	leased := false // the lease number moved
	switch op.kind {
	case opLease:
		if g == nil {
			g = consumergroup.NewQueue(op.cfg, max(op.floor, 0))
			qs.groups[op.group] = g
		} else if err := g.CheckConfig(op.cfg); err != nil {
			res.err = fmt.Errorf("queue group %q on %s: %w", op.group, l.ID(), err)
			return res, nil
		}
		c := qs.scans[op.group]
		if c == nil {
			c = &scanCache{}
			qs.scans[op.group] = c
		}
		res.leases = g.Lease(op.now, op.max, op.visibility, qs.leases+1, c.records(l, g.Next()))
		if n := len(res.leases); n > 0 {
			qs.leases += uint64(n)
			leased = true
		}
	case opSettle:
		if g == nil {
			res.err = fmt.Errorf("%w: %q on %s", ErrQueueGroupNotFound, op.group, l.ID())
			return res, nil
		}
		res.settles = make([]error, len(op.settles))
		for i, s := range op.settles {
			res.settles[i] = g.Settle(op.now, s)
		}
		qs.wakeLocked()
	case opReset:
		if g == nil {
			g = consumergroup.NewQueueAt(op.offset)
			qs.groups[op.group] = g
		}
		g.Reset(op.offset)
		qs.wakeLocked()
	case opDelete:
		if g == nil {
			res.err = fmt.Errorf("%w: %q on %s", ErrQueueGroupNotFound, op.group, l.ID())
			return res, nil
		}
		_, recs := g.Encode()
		delete(qs.groups, op.group)
		delete(qs.scans, op.group)
		ops := []log.StateOp{{Key: queueKey(op.group)}}
		for _, c := range recs {
			ops = append(ops, log.StateOp{Key: queueRecKey(op.group, c.Offset)})
		}
		qs.wakeLocked()
		return res, ops
	}
	hdr, recs := g.Changes()
	var ops []log.StateOp
	if leased {
		ops = append(ops, leasesOp(qs.leases))
	}
	if hdr != nil {
		ops = append(ops, log.StateOp{Key: queueKey(op.group), Value: hdr})
	}
	for _, c := range recs {
		ops = append(ops, log.StateOp{Key: queueRecKey(op.group, c.Offset), Value: c.Value})
	}
	return res, ops
}

func (qs *queues) wakeLocked() {
	close(qs.changed)
	qs.changed = make(chan struct{})
}

// scanCache keeps what a queue group needs of the records of its last log
// read (offset, key, deliver-at time), for the state machine's scans of
// new records. Like batchCache it holds what a read would return. Its
// keys are copies, so that it does not keep the batches read.
type scanCache struct {
	recs []consumergroup.QueueRecord // in offset order
	// reads counts the log reads, for tests.
	reads int
}

// records yields what a queue group needs of l's records from offset from
// on, up to l's end. Records that retention removed are skipped. At the
// end it reads nothing.
func (c *scanCache) records(l *log.Log, from int64) iter.Seq[consumergroup.QueueRecord] {
	return func(yield func(consumergroup.QueueRecord) bool) {
		next := max(from, l.Start()) // retention may have removed some
		for {
			i, _ := slices.BinarySearchFunc(c.recs, next, func(r consumergroup.QueueRecord, off int64) int { return cmp.Compare(r.Offset, off) })
			if i == len(c.recs) || c.recs[0].Offset > next {
				if next >= l.End() || !c.fill(l, next) {
					return
				}
				// Retention may have removed the records from next on.
				next = max(next, c.recs[0].Offset)
				continue
			}
			for _, r := range c.recs[i:] {
				if !yield(r) {
					return
				}
				next = r.Offset + 1
			}
		}
	}
}

// fill reads the records from next on into the cache and reports whether
// it holds any.
func (c *scanCache) fill(l *log.Log, next int64) bool {
	c.reads++
	bs, err := l.Read(next, queueCacheBytes)
	var oor *log.OutOfRangeError
	if errors.As(err, &oor) && next < oor.Start {
		c.reads++
		bs, err = l.Read(oor.Start, queueCacheBytes)
	}
	c.recs = c.recs[:0]
	if err != nil {
		return false
	}
	for _, b := range bs {
		it := b.Iter()
		for it.Next() {
			r := it.Record()
			if r.Offset < next {
				continue
			}
			qr := consumergroup.QueueRecord{Offset: r.Offset, Key: slices.Clone(r.Key)}
			if v, ok := r.Header(DeliverAtHeader); ok {
				// A value that does not parse does not delay.
				qr.DeliverAt, _ = ParseDeliverAt(v)
			}
			c.recs = append(c.recs, qr)
		}
		if it.Err() != nil {
			break
		}
	}
	return len(c.recs) > 0
}

// load replaces the queue groups with those stored in l's state.
func (qs *queues) load(l *log.Log) error {
	if qs == nil {
		return nil
	}
	hdrs := map[string][]byte{}
	recs := map[string][]consumergroup.QueueChange{}
	var leases uint64
	err := l.State(func(k, v []byte) error {
		switch {
		case len(k) == 1 && k[0] == keyQueueLeases:
			if len(v) != 8 {
				return fmt.Errorf("queue lease number: %d bytes", len(v))
			}
			leases = binary.BigEndian.Uint64(v)
		case len(k) > 0 && k[0] == keyQueue:
			hdrs[string(k[1:])] = append([]byte(nil), v...)
		case len(k) > 0 && k[0] == keyQueueRec:
			if len(k) < 2 || len(k) != 2+int(k[1])+8 {
				return fmt.Errorf("queue record key %x", k)
			}
			g := string(k[2 : 2+k[1]])
			off := int64(binary.BigEndian.Uint64(k[2+k[1]:]))
			recs[g] = append(recs[g], consumergroup.QueueChange{Offset: off, Value: append([]byte(nil), v...)})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load queue groups: %w", err)
	}
	groups := make(map[string]*consumergroup.Queue, len(hdrs))
	for name, hdr := range hdrs {
		g, err := consumergroup.DecodeQueue(hdr, func(yield func(int64, []byte) bool) {
			for _, c := range recs[name] {
				if !yield(c.Offset, c.Value) {
					return
				}
			}
		})
		if err != nil {
			return fmt.Errorf("load queue group %q: %w", name, err)
		}
		groups[name] = g
	}
	qs.deliver.clear()
	qs.mu.Lock()
	defer qs.mu.Unlock()
	qs.scans = make(map[string]*scanCache)
	qs.groups = groups
	qs.leases = leases
	qs.wakeLocked()
	return nil
}

// info describes group, or every group when group is "".
func (qs *queues) info(group string) []QueueGroupInfo {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	var out []QueueGroupInfo
	for name, g := range qs.groups {
		if group == "" || name == group {
			out = append(out, QueueGroupInfo{Group: name, Config: g.Config(), QueueStats: g.Stats()})
		}
	}
	return out
}

// backlog returns the records from the slowest group's start to end, and
// that group; 0 and "" when there is no group.
func (qs *queues) backlog(end int64) (int64, string) {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	var n int64
	var slowest string
	for name, g := range qs.groups {
		if b := end - g.Start(); b > n || b == n && slowest != "" && name < slowest {
			n, slowest = b, name
		}
	}
	return n, slowest
}

// waitState tells a long-polling lease whether to ask now, and if not
// what to wait for: changed, and a due time (0 for none). It asks when the
// group may hand out records, and when it has something to record: the
// group is new, or a reset made it and it has no configuration yet. It
// fails at once when cfg conflicts with the group's configuration.
func (qs *queues) waitState(l *log.Log, group string, cfg consumergroup.QueueConfig, now int64) (ask bool, changed <-chan struct{}, due int64, err error) {
	end := l.End() // read before qs.mu: the log is not called under it here
	qs.mu.Lock()
	defer qs.mu.Unlock()
	g := qs.groups[group]
	if g == nil || !g.Configured() {
		return true, nil, 0, nil
	}
	if err := g.ConfigConflict(cfg); err != nil {
		return false, nil, 0, fmt.Errorf("queue group %q on %s: %w", group, l.ID(), err)
	}
	if g.HasReady(now) || (g.Next() < end && !g.Full()) {
		return true, nil, 0, nil
	}
	due, _ = g.NextDue()
	return false, qs.changed, due, nil
}

// readLeased returns the leased records, in the order of leases, read from
// l. A record retention removed since is left out. Only the leased records
// are copied out of the batches.
func readLeased(l *log.Log, c *batchCache, leases []consumergroup.QueueLease) ([]LeasedRecord, error) {
	out := make([]LeasedRecord, 0, len(leases))
	i := 0 // next lease to find; leases come in offset order
	for i < len(leases) {
		bs, err := c.read(l, leases[i].Offset)
		var oor *log.OutOfRangeError
		if errors.As(err, &oor) {
			i++
			continue
		}
		if err != nil {
			return nil, err
		}
		if len(bs) == 0 {
			break
		}
		last := bs[len(bs)-1].NextOffset()
		for _, b := range bs {
			if i < len(leases) && leases[i].Offset >= b.NextOffset() {
				continue
			}
			it := b.Iter()
			for i < len(leases) && it.Next() {
				r := it.Record()
				for i < len(leases) && leases[i].Offset < r.Offset {
					i++ // not in the log any more
				}
				if i < len(leases) && leases[i].Offset == r.Offset {
					out = append(out, LeasedRecord{Record: cloneRecord(r), Attempt: leases[i].Attempt, Deadline: time.UnixMilli(leases[i].Deadline), Lease: leases[i].Lease})
					i++
				}
			}
			if err := it.Err(); err != nil {
				return nil, err
			}
		}
		for i < len(leases) && leases[i].Offset < last {
			i++
		}
	}
	return out, nil
}

func cloneRecord(r *record.Record) record.Record {
	c := record.Record{Offset: r.Offset, Timestamp: r.Timestamp}
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Value)
	}
	buf := make([]byte, 0, n)
	take := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		buf = append(buf, b...)
		return buf[len(buf)-len(b) : len(buf) : len(buf)]
	}
	c.Key, c.Value = take(r.Key), take(r.Value)
	if c.Value == nil {
		c.Value = []byte{}
	}
	if len(r.Headers) > 0 {
		c.Headers = make([]record.Header, len(r.Headers))
		for i, h := range r.Headers {
			c.Headers[i] = record.Header{Key: h.Key, Value: take(h.Value)}
		}
	}
	return c
}

// LeasedRecord is a record leased to a queue consumer.
type LeasedRecord struct {
	record.Record
	// Attempt is the record's delivery count, 1 on the first delivery.
	Attempt int
	// Deadline is when the lease ends.
	Deadline time.Time
	// Lease is the lease's number, which a settle of it names
	// (consumergroup.Settle's Lease).
	Lease uint64
}

// queueDo applies a queue operation where the owner keeps its groups:
// through raft on a Replica, directly on a Partition.
type queueDo func(op *queueOp) (queueResult, error)

// lease leases records for req, long-polling up to wait: it asks (calls
// do) only when the group's state says a record may be available now (the
// log grew, a not-before time or a lease deadline passed, a settle or a
// reset released records); otherwise it waits for one of those, the end of
// the wait, ctx, or check's channel. When the wait ends with nothing to
// hand out it returns no records without asking: an idle consumer's polls
// write nothing. check, called before each ask, returns an error to give up
// with (not the leader), and a channel closed when it should be called
// again.
func lease(ctx context.Context, l *log.Log, qs *queues, req LeaseRequest, wait time.Duration,
	check func() (<-chan struct{}, error), do queueDo) ([]LeasedRecord, error) {
	if err := req.check(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		recheck, err := check()
		if err != nil {
			return nil, err
		}
		grew := l.Wait()
		now := time.Now()
		ask, changed, due, err := qs.waitState(l, req.Group, req.Config, now.UnixMilli())
		if err != nil {
			return nil, err
		}
		last := !now.Before(deadline)
		if !ask && last {
			// Nothing to hand out: a lease entry would lease nothing
			// and change nothing, so none is written.
			return nil, nil
		}
		if ask {
			op := &queueOp{kind: opLease, now: now.UnixMilli(), group: req.Group, cfg: req.Config,
				max: req.Max, visibility: req.Visibility.Milliseconds(), floor: l.Start()}
			res, err := do(op)
			if err == nil {
				err = res.err
			}
			if err != nil {
				return nil, err
			}
			if len(res.leases) > 0 || last {
				recs, err := readLeased(l, &qs.deliver, res.leases)
				if err != nil || len(recs) == len(res.leases) {
					return recs, err
				}
				// Retention removed some of the records: settle them, or
				// they would come back for good.
				if err := settleGone(req.Group, res.leases, recs, do); err != nil {
					return nil, err
				}
				if len(recs) > 0 || last {
					return recs, nil
				}
			}
			continue
		}
		until := deadline
		if due != 0 {
			// Due times are whole milliseconds; wake just after.
			if t := time.UnixMilli(due + 1); t.Before(until) {
				until = t
			}
		}
		if timer == nil {
			timer = time.NewTimer(time.Until(until))
		} else {
			timer.Reset(time.Until(until))
		}
		qs.parked.Add(1)
		select {
		case <-grew:
		case <-changed:
		case <-recheck:
		case <-timer.C:
		case <-ctx.Done():
		}
		qs.parked.Add(-1)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

// settleGone acks the leases that readLeased found no record for.
func settleGone(group string, leases []consumergroup.QueueLease, recs []LeasedRecord, do queueDo) error {
	found := make(map[int64]bool, len(recs))
	for _, r := range recs {
		found[r.Offset] = true
	}
	var ops []consumergroup.Settle
	for _, ls := range leases {
		if !found[ls.Offset] {
			ops = append(ops, consumergroup.Settle{Kind: consumergroup.Ack, Offset: ls.Offset, Attempt: ls.Attempt, Lease: ls.Lease})
		}
	}
	_, err := settle(group, ops, do)
	return err
}

// settle applies settle operations of group and returns one error (nil:
// done) per operation.
func settle(group string, ops []consumergroup.Settle, do queueDo) ([]error, error) {
	if err := checkSettles(group, ops); err != nil {
		return nil, err
	}
	res, err := do(&queueOp{kind: opSettle, now: time.Now().UnixMilli(), group: group, settles: ops})
	if err == nil {
		err = res.err
	}
	return res.settles, err
}

// resetQueue moves group to offset off (creating it there if it is new).
func resetQueue(l *log.Log, group string, off int64, do queueDo) error {
	if err := checkGroupName(group); err != nil {
		return err
	}
	if start, end := l.Start(), l.End(); off < start || off > end {
		return &log.OutOfRangeError{Offset: off, Start: start, End: end}
	}
	res, err := do(&queueOp{kind: opReset, now: time.Now().UnixMilli(), group: group, offset: off})
	if err == nil {
		err = res.err
	}
	return err
}

// deleteQueue forgets group.
func deleteQueue(group string, do queueDo) error {
	if err := checkGroupName(group); err != nil {
		return err
	}
	res, err := do(&queueOp{kind: opDelete, now: time.Now().UnixMilli(), group: group})
	if err == nil {
		err = res.err
	}
	return err
}
