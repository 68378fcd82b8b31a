package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// DeliverAtHeader is the record header that holds a record's deliver-at
// time (RFC 3339 or Unix milliseconds): queue groups do not hand the record
// out before it.
const DeliverAtHeader = "runnel-deliver-at"

// DeliverAt returns the header that makes queue groups hold a record back
// until t.
func DeliverAt(t time.Time) Header {
	return Header{Key: DeliverAtHeader, Value: []byte(strconv.FormatInt(t.UnixMilli(), 10))}
}

// Dead-letter headers: a record the queue dead-letters carries its
// original headers and these.
const (
	DLQReasonHeader    = "runnel-dlq-reason"
	DLQTopicHeader     = "runnel-dlq-topic"
	DLQPartitionHeader = "runnel-dlq-partition"
	DLQOffsetHeader    = "runnel-dlq-offset"
	DLQGroupHeader     = "runnel-dlq-group"
	DLQAttemptsHeader  = "runnel-dlq-attempts"
	// MsgIDHeader is the header the broker's dedupe window reads
	// (partition.MsgIDHeader): within the window, a batch whose records
	// all carry ids the partition has seen is not written again.
	MsgIDHeader = "runnel-msg-id"
)

// ErrLeaseLost is returned by Ack, Nack, Extend and Reject for a delivery
// whose lease ended and moved on: the record was leased again (the lease
// expired), released, or the group was rewound. Another delivery of the
// record is, or will be, handled elsewhere.
var ErrLeaseLost = errors.New("client: queue lease lost")

// errSettled is matched, with ErrLeaseLost, by a nack or extend of a
// record already settled.
var errSettled = errors.New("the record is settled")

// QueueOptions configure a queue consumer (a member of a queue group).
type QueueOptions struct {
	// Visibility is how long each delivery is leased; default 30s.
	Visibility time.Duration
	// MaxDeliveries is how many deliveries a record gets: a record leased
	// again after that many (its leases expired or it was nacked) is
	// dead-lettered by the queue without reaching Next. 0 is unlimited.
	MaxDeliveries int
	// DeadLetterTopic is where dead letters go; default "<topic>.dlq".
	// It is created, with the topic's partition count, when first needed.
	DeadLetterTopic string
	// KeyOrdering allows at most one in-flight record per key, and never a
	// record before an earlier unsettled one with its key. Every consumer
	// of a group must agree on it.
	KeyOrdering bool
	// Prefetch is how many records are leased ahead of Next; default 64.
	// Each partition's leases take at most an equal share of it (one at
	// least). A partition with nothing to lease waits for a record without
	// holding any of it, so that it never holds up the other partitions;
	// the one record such a wait leases, when it comes, waits for a free
	// place in Prefetch, so a consumer may hold up to one record per
	// partition beyond Prefetch.
	Prefetch int
	// DeadLetterValue builds the value of a record the queue dead-letters
	// by itself (deliveries over MaxDeliveries); nil: the original value.
	DeadLetterValue func(d *Delivery, reason string) []byte
}

// Queue limits.
const (
	defaultVisibility = 30 * time.Second
	defaultPrefetch   = 64
	// maxLeaseBatch bounds the records of one Lease call.
	maxLeaseBatch = 512
	// leaseWaitDefault is how long one Lease call long-polls.
	leaseWaitDefault = 10 * time.Second
	// leaseLinger is how long a fetcher with few free slots waits for more
	// before it leases, when Next has nothing to hand out.
	leaseLinger = time.Millisecond
	// maxSettleBatch bounds the operations of one Settle call.
	maxSettleBatch = 2048
	// maxLeaseMargin bounds the lease a delivery must have left for Next
	// to hand it out: a tenth of Visibility, at most this.
	maxLeaseMargin = time.Second
	// maxDeadLetters bounds the dead letters a queue writes at once for
	// deliveries past MaxDeliveries.
	maxDeadLetters = 4
)

// leaseWait is how long one Lease call long-polls: leaseWaitDefault, but
// tests may set it before opening a queue.
var leaseWait = leaseWaitDefault

// Delivery is a record leased to this consumer.
type Delivery struct {
	// Record is the record; its bytes are owned by the Delivery.
	Record
	// Attempt is the record's delivery count, 1 on the first delivery.
	Attempt int
	// LeaseUntil is when the lease ends unless extended; after it the
	// record goes to another consumer.
	LeaseUntil time.Time
	// lease is the lease's number, which every settle of d sends.
	lease uint64
}

// DeadLetter is what Reject writes to the dead-letter topic.
type DeadLetter struct {
	// Reason says why; it goes into the runnel-dlq-reason header.
	Reason string
	// Value is the dead-letter record's value; nil: the original value.
	Value []byte
	// Headers are added to the original headers and the runnel-dlq-*
	// headers.
	Headers []Header
}

// Queue is a consumer of a queue group: records of a topic's partitions
// are leased to it one at a time, shared with every other consumer of the
// group (work-queue semantics). It leases from every partition, so any
// number of consumers all get work. Deliveries must be settled with Ack,
// Nack, Extend (to keep working) or Reject before their lease ends, or
// they go to another consumer with the next attempt number. It is safe for
// concurrent use.
type Queue struct {
	c            *Client
	group, topic string
	opts         QueueOptions

	ctx    context.Context // ends when Close begins
	cancel context.CancelFunc
	// wg waits for the fetchers and the dead-letter writers.
	wg sync.WaitGroup

	// settleCtx ends once Close has let the settles in flight finish; the
	// settle loops, which settleLoops waits for, send under it.
	settleCtx    context.Context
	settleCancel context.CancelFunc
	settleLoops  sync.WaitGroup
	// mu guards closing; settling counts the Ack, Nack, Extend and Reject
	// calls in flight, which Close waits for. Once closing is set no call
	// joins them.
	mu       sync.Mutex
	closing  bool
	settling sync.WaitGroup
	// deadLetters holds a token per dead letter being written for a
	// delivery past MaxDeliveries.
	deadLetters chan struct{}
	// leaseWait is how long one Lease call long-polls, read from the
	// package's leaseWait when the queue opens.
	leaseWait time.Duration

	// slots holds one token per delivery leased and not yet returned by
	// Next: a partition's fetcher takes tokens before it leases.
	slots chan struct{}
	out   chan *Delivery
	// share is the most slots one partition's lease takes.
	share int

	parts []*queuePartition

	dlqOnce sync.Mutex
	dlqMade bool

	closeOnce sync.Once

	// nextTook, set by tests only, runs in Next between taking a delivery
	// from out and claiming it.
	nextTook func()
	// settleSending, set by tests only, runs in a settle loop before each
	// settle call.
	settleSending func()
}

// queuePartition is a Queue's view of one partition.
type queuePartition struct {
	q    *Queue
	part int32
	// settles are the settle operations waiting to be sent.
	settles chan *settleReq
	// polls counts the long polls started and ended: odd while one is in
	// flight.
	polls atomic.Int64

	mu sync.Mutex
	// held are the deliveries Next handed out and not settled, by offset,
	// with their lease; Close nacks them (without delay), so that their
	// delivery counts, as the application may have worked on them.
	held map[int64]heldLease
	// unseen are the deliveries leased and not claimed by Next yet: in the
	// fetcher's hands or in Queue.out. Next claims a delivery by moving it
	// to held, unless the queue is closing; Close releases those left, so
	// that their delivery does not count. Whichever of the two comes first
	// under mu owns the delivery.
	unseen map[*Delivery]struct{}
}

// settleReq is one settle operation and where its outcome goes.
type settleReq struct {
	op   *runnelpb.SettleOp
	done chan error
}

// Queue joins queue group group on topic and starts leasing. The topic
// must exist.
func (c *Client) Queue(group, topic string, opts QueueOptions) (*Queue, error) {
	if group == "" || len(group) > 200 {
		return nil, &Error{Kind: ErrInvalidArgument, Message: fmt.Sprintf("queue group name %q: use 1 to 200 bytes", group)}
	}
	if opts.Visibility == 0 {
		opts.Visibility = defaultVisibility
	}
	if opts.Visibility < time.Millisecond || opts.Visibility > 12*time.Hour {
		return nil, &Error{Kind: ErrInvalidArgument, Message: fmt.Sprintf("queue group %q: visibility %s; use 1ms to 12h", group, opts.Visibility)}
	}
	if opts.Prefetch == 0 {
		opts.Prefetch = defaultPrefetch
	}
	if opts.Prefetch < 0 || opts.Prefetch > 10_000 || opts.MaxDeliveries < 0 {
		return nil, &Error{Kind: ErrInvalidArgument, Message: fmt.Sprintf("queue group %q: prefetch %d, max deliveries %d; use a prefetch of 1 to 10000 and max deliveries of 0 (unlimited) or more", group, opts.Prefetch, opts.MaxDeliveries)}
	}
	if opts.DeadLetterTopic == "" {
		opts.DeadLetterTopic = topic + ".dlq"
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.requestTimeout)
	n, err := c.meta.partitions(ctx, topic)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("queue group %q on %q: %w", group, topic, err)
	}
	q := &Queue{c: c, group: group, topic: topic, opts: opts, share: max(opts.Prefetch/n, 1), leaseWait: leaseWait,
		slots: make(chan struct{}, opts.Prefetch), out: make(chan *Delivery, opts.Prefetch),
		deadLetters: make(chan struct{}, maxDeadLetters)}
	q.ctx, q.cancel = context.WithCancel(c.ctx)
	q.settleCtx, q.settleCancel = context.WithCancel(c.ctx)
	for p := range int32(n) {
		qp := &queuePartition{q: q, part: p, settles: make(chan *settleReq, 256), held: map[int64]heldLease{}, unseen: map[*Delivery]struct{}{}}
		q.parts = append(q.parts, qp)
	}
	for range opts.Prefetch {
		q.slots <- struct{}{}
	}
	for _, qp := range q.parts {
		q.wg.Add(1)
		go func() { defer q.wg.Done(); qp.fetchLoop() }()
		q.settleLoops.Add(1)
		go func() { defer q.settleLoops.Done(); qp.settleLoop() }()
	}
	return q, nil
}

// Visibility returns how long each delivery is leased: QueueOptions.Visibility,
// or its default when that was 0.
func (q *Queue) Visibility() time.Duration { return q.opts.Visibility }

// Next returns the next leased record, blocking until there is one or ctx
// ends. Once Close has begun it returns ErrClosed.
//
// A record leased ahead whose lease ended while it waited for Next, or
// ends within a tenth of Visibility (at most a second), is skipped, left
// unsettled: it is, or will be, another consumer's.
func (q *Queue) Next(ctx context.Context) (*Delivery, error) {
	for {
		select {
		case d := <-q.out:
			q.slots <- struct{}{}
			if q.nextTook != nil {
				q.nextTook()
			}
			qp := q.parts[d.Partition]
			if time.Until(d.LeaseUntil) < q.leaseMargin() {
				if !qp.drop(d) {
					return nil, ErrClosed
				}
				q.c.cfg.logger.Debug("runnel queue: lease ended in the prefetch; skipped", "group", q.group, "topic", q.topic,
					"partition", d.Partition, "offset", d.Offset, "attempt", d.Attempt, "lease_until", d.LeaseUntil)
				continue
			}
			if !qp.claim(d) {
				return nil, ErrClosed
			}
			return d, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-q.ctx.Done():
			return nil, ErrClosed
		}
	}
}

// leaseMargin is the lease a delivery must have left for Next to hand it
// out: enough for the caller to extend or settle it before it ends.
func (q *Queue) leaseMargin() time.Duration {
	return min(q.opts.Visibility/10, maxLeaseMargin)
}

// heldLease names a held delivery's lease.
type heldLease struct {
	attempt int
	lease   uint64
}

// claim moves d from unseen to held, for Next to return it. It reports
// false when the queue is closing: d stays for Close to release, or Close
// has released it already.
func (qp *queuePartition) claim(d *Delivery) bool {
	qp.mu.Lock()
	defer qp.mu.Unlock()
	if _, ok := qp.unseen[d]; !ok || qp.q.ctx.Err() != nil {
		return false
	}
	delete(qp.unseen, d)
	qp.held[d.Offset] = heldLease{attempt: d.Attempt, lease: d.lease}
	return true
}

// drop forgets d, leased and not claimed, without settling it: its lease
// ends by itself. It reports false when the queue is closing, as claim.
func (qp *queuePartition) drop(d *Delivery) bool {
	qp.mu.Lock()
	defer qp.mu.Unlock()
	if _, ok := qp.unseen[d]; !ok || qp.q.ctx.Err() != nil {
		return false
	}
	delete(qp.unseen, d)
	return true
}

// Ack settles d: the record is done.
func (q *Queue) Ack(ctx context.Context, d *Delivery) error {
	return q.settle(ctx, d, runnelpb.SettleKind_SETTLE_KIND_ACK, 0)
}

// Nack makes d's record available again after delay, to any consumer, with
// the next attempt number.
func (q *Queue) Nack(ctx context.Context, d *Delivery, delay time.Duration) error {
	return q.settle(ctx, d, runnelpb.SettleKind_SETTLE_KIND_NACK, delay)
}

// Extend sets d's lease to end by from now. It fails with ErrLeaseLost
// when the lease already moved on.
func (q *Queue) Extend(ctx context.Context, d *Delivery, by time.Duration) error {
	if err := q.settle(ctx, d, runnelpb.SettleKind_SETTLE_KIND_EXTEND, by); err != nil {
		return err
	}
	d.LeaseUntil = time.Now().Add(by)
	return nil
}

// Reject writes dl to the dead-letter topic, idempotently (message id
// "dlq/<group>/<topic>/<partition>/<offset>"), and then settles d for good.
//
// Before writing, Reject extends the lease by the visibility timeout, so
// that the record stays with this consumer while the dead letter is
// written, and so that a Reject of a record already settled (a retry)
// writes nothing and returns nil. The message id also keeps a retry after
// an unknown outcome from writing the dead letter twice.
func (q *Queue) Reject(ctx context.Context, d *Delivery, dl DeadLetter) error {
	if !q.beginSettle() {
		return ErrClosed
	}
	defer q.settling.Done()
	err := q.settleOp(ctx, d, runnelpb.SettleKind_SETTLE_KIND_EXTEND, q.opts.Visibility)
	if errors.Is(err, errSettled) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := q.deadLetter(ctx, d, dl); err != nil {
		return err
	}
	return q.settleOp(ctx, d, runnelpb.SettleKind_SETTLE_KIND_REJECT, 0)
}

// Close stops leasing and releases every lease not settled yet (the
// records are redelivered without delay). A delivery Next returned keeps
// its delivery count; one leased ahead and never returned by Next is
// handed back uncounted, as is the one a Next racing Close took: that
// Next returns ErrClosed. Ack, Nack, Extend and Reject calls in flight
// when Close begins finish first (each bounded by its own context); later
// ones return ErrClosed.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		q.mu.Lock()
		q.closing = true
		q.mu.Unlock()
		q.cancel()
		// Once the fetchers and dead-letter writers have stopped, no
		// delivery is added to unseen; one a Next took from out stays
		// there, as Next sees the queue closing.
		q.wg.Wait()
		// A settle that finishes takes its delivery out of held, so that
		// it is not nacked below.
		q.settling.Wait()
		q.settleCancel()
		q.settleLoops.Wait()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(q.c.ctx), q.c.cfg.requestTimeout)
		defer cancel()
		var wg sync.WaitGroup
		for _, qp := range q.parts {
			qp.mu.Lock()
			var ops []*runnelpb.SettleOp
			for off, h := range qp.held {
				ops = append(ops, &runnelpb.SettleOp{Kind: runnelpb.SettleKind_SETTLE_KIND_NACK, Offset: off, Attempt: int32(h.attempt), Lease: h.lease})
			}
			for d := range qp.unseen {
				ops = append(ops, &runnelpb.SettleOp{Kind: runnelpb.SettleKind_SETTLE_KIND_RELEASE, Offset: d.Offset, Attempt: int32(d.Attempt), LeaseUntilMs: d.LeaseUntil.UnixMilli(), Lease: d.lease})
			}
			clear(qp.held)
			clear(qp.unseen)
			qp.mu.Unlock()
			if len(ops) == 0 {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Best effort: a lease not released expires.
				_, _ = qp.send(ctx, ops)
			}()
		}
		wg.Wait()
	})
	return nil
}

// beginSettle counts a settle call in flight, which Close waits for. It
// reports false once Close has begun.
func (q *Queue) beginSettle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closing {
		return false
	}
	q.settling.Add(1)
	return true
}

// settle is settleOp counted in flight.
func (q *Queue) settle(ctx context.Context, d *Delivery, kind runnelpb.SettleKind, dur time.Duration) error {
	if !q.beginSettle() {
		return ErrClosed
	}
	defer q.settling.Done()
	return q.settleOp(ctx, d, kind, dur)
}

// settleOp sends one settle operation through the partition's settle
// loop and waits for its outcome or ctx. The caller counts it in flight.
func (q *Queue) settleOp(ctx context.Context, d *Delivery, kind runnelpb.SettleKind, dur time.Duration) error {
	if d.Topic != q.topic || int(d.Partition) >= len(q.parts) || d.Partition < 0 {
		return &Error{Kind: ErrInvalidArgument, Message: fmt.Sprintf("queue group %q on %q: delivery of %s/%d is not from this queue", q.group, q.topic, d.Topic, d.Partition)}
	}
	if dur < 0 || dur > 12*time.Hour {
		return &Error{Kind: ErrInvalidArgument, Message: fmt.Sprintf("queue group %q: %s of %s/%d@%d by %s; use 0 to 12h", q.group, settleName(kind), d.Topic, d.Partition, d.Offset, dur)}
	}
	qp := q.parts[d.Partition]
	r := &settleReq{
		op:   &runnelpb.SettleOp{Kind: kind, Offset: d.Offset, Attempt: int32(d.Attempt), DurationMs: dur.Milliseconds(), Lease: d.lease},
		done: make(chan error, 1),
	}
	// The settle loops run until Close has let this call finish, or the
	// client closes.
	select {
	case qp.settles <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-q.settleCtx.Done():
		return ErrClosed
	}
	var err error
	select {
	case err = <-r.done:
	case <-ctx.Done():
		return ctx.Err()
	case <-q.settleCtx.Done():
		return ErrClosed
	}
	if err == nil && kind != runnelpb.SettleKind_SETTLE_KIND_EXTEND || errors.Is(err, ErrLeaseLost) {
		qp.mu.Lock()
		if qp.held[d.Offset] == (heldLease{attempt: d.Attempt, lease: d.lease}) {
			delete(qp.held, d.Offset)
		}
		qp.mu.Unlock()
	}
	return err
}

func settleName(k runnelpb.SettleKind) string {
	switch k {
	case runnelpb.SettleKind_SETTLE_KIND_ACK:
		return "ack"
	case runnelpb.SettleKind_SETTLE_KIND_NACK:
		return "nack"
	case runnelpb.SettleKind_SETTLE_KIND_EXTEND:
		return "extend"
	case runnelpb.SettleKind_SETTLE_KIND_REJECT:
		return "reject"
	case runnelpb.SettleKind_SETTLE_KIND_RELEASE:
		return "release"
	}
	return k.String()
}

// fetchLoop leases records of the partition while the queue is open and
// hands them to Next.
//
// It leases in two ways. While the partition has records, it takes free
// slots of the prefetch first and leases that many without waiting. Once
// a lease finds nothing, the partition is idle: it long-polls for one
// record without taking a slot, and takes one only when the record
// comes. An idle partition thus holds no slot during its long poll, and
// the partitions with records use the whole prefetch however small it
// is, at the cost of one record per partition beyond Prefetch (leased,
// waiting for a slot) and an extra lease call when an idle partition
// gets a record.
func (qp *queuePartition) fetchLoop() {
	q := qp.q
	failures := 0
	idle := false
	for {
		if idle {
			ds, err := qp.lease(1, q.leaseWait)
			if err != nil {
				if q.ctx.Err() != nil {
					return
				}
				failures++
				qp.leaseFailed(failures, err)
				if q.c.sleep(q.ctx, q.c.prod.backoff(failures)) != nil {
					return
				}
				continue
			}
			failures = 0
			// The record came without a slot: take one for it, as the
			// busy path took them before its lease.
			for range ds {
				select {
				case <-q.slots:
				case <-q.ctx.Done():
					return // Close releases ds, unseen
				}
			}
			idle = len(ds) == 0
			if !qp.handOut(ds) {
				return
			}
			continue
		}
		// One slot at least, then as many as are free.
		select {
		case <-q.slots:
		case <-q.ctx.Done():
			return
		}
		// While Next still has records to hand out, wait until half the
		// share is free, so that leases go in batches rather than one
		// record (one raft entry) per Next.
		n, limit := 1, min(maxLeaseBatch, q.share)
		var linger *time.Timer
	more:
		for n < limit {
			select {
			case <-q.slots:
				n++
				continue
			default:
			}
			if n >= limit/2 {
				break more
			}
			if len(q.out) == 0 {
				// Next has nothing to hand out: lease now, but let the
				// slots that settles are freeing in a burst join first.
				if linger == nil {
					linger = time.NewTimer(leaseLinger)
				}
				select {
				case <-q.slots:
					n++
					continue
				case <-linger.C:
					break more
				case <-q.ctx.Done():
					return
				}
			}
			select {
			case <-q.slots:
				n++
			case <-q.ctx.Done():
				return
			}
		}
		if linger != nil {
			linger.Stop()
			linger = nil
		}
		ds, err := qp.lease(n, 0)
		for range n - len(ds) {
			q.slots <- struct{}{}
		}
		if err != nil {
			if q.ctx.Err() != nil {
				return
			}
			failures++
			qp.leaseFailed(failures, err)
			if q.c.sleep(q.ctx, q.c.prod.backoff(failures)) != nil {
				return
			}
			continue
		}
		failures = 0
		idle = len(ds) == 0
		if !qp.handOut(ds) {
			return
		}
	}
}

func (qp *queuePartition) leaseFailed(failures int, err error) {
	q := qp.q
	q.c.cfg.logger.Debug("runnel queue: lease failed", "group", q.group, "topic", q.topic, "partition", qp.part, "err", err)
	if !Retriable(err) && !isConnectError(err) {
		q.c.cfg.logger.Warn("runnel queue: lease failed", "group", q.group, "topic", q.topic, "partition", qp.part, "err", err)
	}
}

// handOut hands leased deliveries, which hold a slot each, to Next. It
// returns false when the queue closed; Close releases those not handed
// out, as they are unseen.
func (qp *queuePartition) handOut(ds []*Delivery) bool {
	q := qp.q
	for _, d := range ds {
		if q.opts.MaxDeliveries > 0 && d.Attempt > q.opts.MaxDeliveries {
			// Its slot goes back: it never reaches Next.
			q.slots <- struct{}{}
			qp.deadLetterLater(d)
			continue
		}
		select {
		case q.out <- d:
		case <-q.ctx.Done():
			return false
		}
	}
	return true
}

// deadLetterLater dead-letters a delivery past MaxDeliveries on a
// goroutine of its own, so that a slow dead-letter topic does not hold up
// the partition's leases. When maxDeadLetters are being written already,
// d is left alone: its lease ends and it comes back to be dead-lettered
// then.
func (qp *queuePartition) deadLetterLater(d *Delivery) {
	q := qp.q
	select {
	case q.deadLetters <- struct{}{}:
	default:
		if qp.drop(d) {
			q.c.cfg.logger.Debug("runnel queue: dead letters busy; the record comes back when its lease ends", "group", q.group, "topic", q.topic, "partition", qp.part, "offset", d.Offset)
		}
		return
	}
	// The fetcher calling this is counted in wg, so Close's Wait cannot
	// have returned.
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		defer func() { <-q.deadLetters }()
		qp.exhausted(d)
	}()
}

// exhausted dead-letters a delivery past MaxDeliveries: Reject writes the
// dead letter and only then settles the record.
func (qp *queuePartition) exhausted(d *Delivery) {
	q := qp.q
	// Claimed, it is held: Close nacks it if the dead letter is not
	// written by then.
	if !qp.claim(d) {
		return
	}
	reason := fmt.Sprintf("delivered %d times, max deliveries %d", d.Attempt-1, q.opts.MaxDeliveries)
	dl := DeadLetter{Reason: reason}
	if q.opts.DeadLetterValue != nil {
		dl.Value = q.opts.DeadLetterValue(d, reason)
	}
	ctx, cancel := context.WithTimeout(q.ctx, q.c.cfg.requestTimeout)
	defer cancel()
	if err := q.Reject(ctx, d, dl); err != nil && q.ctx.Err() == nil {
		// The lease expires and the record comes back to try again.
		q.c.cfg.logger.Warn("runnel queue: dead-lettering failed", "group", q.group, "topic", q.topic, "partition", qp.part, "offset", d.Offset, "err", err)
	}
}

// lease asks the partition's leader for up to n records, waiting up to
// wait for one. The deliveries are unseen until Next claims them.
func (qp *queuePartition) lease(n int, wait time.Duration) ([]*Delivery, error) {
	q := qp.q
	if wait > 0 {
		qp.polls.Add(1)
		defer qp.polls.Add(1)
	}
	req := &runnelpb.LeaseRequest{
		Group: q.group, Topic: q.topic, Partition: qp.part, Max: int32(n),
		VisibilityMs: q.opts.Visibility.Milliseconds(), WaitMs: wait.Milliseconds(), KeyOrdering: q.opts.KeyOrdering,
	}
	var resp *runnelpb.LeaseResponse
	err := qp.call(q.ctx, wait, func(ctx context.Context, qc runnelpb.QueuesClient) (err error) {
		resp, err = qc.Lease(ctx, req)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("queue group %q: lease from %s/%d: %w", q.group, q.topic, qp.part, err)
	}
	out := make([]*Delivery, len(resp.Deliveries))
	for i, pd := range resp.Deliveries {
		d := &Delivery{
			Record: Record{
				Topic: q.topic, Partition: qp.part, Offset: pd.Offset, Key: pd.Key, Value: pd.Value,
				Timestamp: time.UnixMilli(pd.TimestampMs),
			},
			Attempt:    int(pd.Attempt),
			LeaseUntil: time.UnixMilli(pd.LeaseUntilMs),
			lease:      pd.Lease,
		}
		if d.Value == nil {
			d.Value = []byte{}
		}
		if len(pd.Headers) > 0 {
			d.Headers = make([]Header, len(pd.Headers))
			for j, h := range pd.Headers {
				d.Headers[j] = Header{Key: h.Key, Value: h.Value}
			}
		}
		out[i] = d
	}
	qp.mu.Lock()
	for _, d := range out {
		qp.unseen[d] = struct{}{}
	}
	qp.mu.Unlock()
	return out, nil
}

// settleLoop sends the partition's settle operations, batching those that
// wait together into one call.
func (qp *queuePartition) settleLoop() {
	q := qp.q
	for {
		var batch []*settleReq
		select {
		case r := <-qp.settles:
			batch = append(batch, r)
		case <-q.settleCtx.Done():
			qp.failQueued()
			return
		}
	more:
		for len(batch) < maxSettleBatch {
			select {
			case r := <-qp.settles:
				batch = append(batch, r)
			default:
				break more
			}
		}
		ops := make([]*runnelpb.SettleOp, len(batch))
		for i, r := range batch {
			ops[i] = r.op
		}
		if q.settleSending != nil {
			q.settleSending()
		}
		results, err := qp.send(q.settleCtx, ops)
		for i, r := range batch {
			switch {
			case err != nil:
				r.done <- err
			default:
				r.done <- settleResult(q, qp.part, r.op, results[i])
			}
		}
	}
}

func (qp *queuePartition) failQueued() {
	for {
		select {
		case r := <-qp.settles:
			r.done <- ErrClosed
		default:
			return
		}
	}
}

// settleResult turns one operation's outcome into its error.
func settleResult(q *Queue, part int32, op *runnelpb.SettleOp, r *runnelpb.SettleResult) error {
	switch r.GetOutcome() {
	case runnelpb.SettleOutcome_SETTLE_OUTCOME_OK:
		return nil
	case runnelpb.SettleOutcome_SETTLE_OUTCOME_SETTLED:
		// A retried ack or reject finds its own work done.
		if op.Kind == runnelpb.SettleKind_SETTLE_KIND_ACK || op.Kind == runnelpb.SettleKind_SETTLE_KIND_REJECT {
			return nil
		}
	}
	err := ErrLeaseLost
	if r.GetOutcome() == runnelpb.SettleOutcome_SETTLE_OUTCOME_SETTLED {
		err = fmt.Errorf("%w (%w)", ErrLeaseLost, errSettled)
	}
	return fmt.Errorf("%w: queue group %q, %s of %s/%d@%d attempt %d: %s", err, q.group, settleName(op.Kind), q.topic, part, op.Offset, op.Attempt, r.GetMessage())
}

// send sends settle operations to the partition's leader, retrying while
// the outcome is unknown: settling a delivery twice has the effect of once.
func (qp *queuePartition) send(ctx context.Context, ops []*runnelpb.SettleOp) ([]*runnelpb.SettleResult, error) {
	q := qp.q
	req := &runnelpb.SettleRequest{Group: q.group, Topic: q.topic, Partition: qp.part, Ops: ops}
	var resp *runnelpb.SettleResponse
	for attempt := 1; ; attempt++ {
		err := qp.call(ctx, 0, func(ctx context.Context, qc runnelpb.QueuesClient) (err error) {
			resp, err = qc.Settle(ctx, req)
			return err
		})
		if err == nil {
			if len(resp.Results) != len(ops) {
				return nil, &Error{Kind: ErrInternal, Message: fmt.Sprintf("settle of %d operations answered with %d results", len(ops), len(resp.Results))}
			}
			return resp.Results, nil
		}
		if !Retriable(err) && !isConnectError(err) || attempt >= 20 {
			return nil, fmt.Errorf("queue group %q: settle on %s/%d: %w", q.group, q.topic, qp.part, err)
		}
		if serr := q.c.sleep(ctx, q.c.prod.backoff(attempt)); serr != nil {
			return nil, fmt.Errorf("queue group %q: settle on %s/%d: %w (last error: %w)", q.group, q.topic, qp.part, serr, err)
		}
	}
}

// call runs f against the partition's leader (see Client.queueCall).
func (qp *queuePartition) call(ctx context.Context, wait time.Duration, f func(ctx context.Context, qc runnelpb.QueuesClient) error) error {
	return qp.q.c.queueCall(ctx, qp.q.topic, qp.part, wait, f)
}

// queueCall runs f against the leader of topic/part, following a
// NOT_LEADER hint and refreshing metadata when the leader cannot be
// reached. wait is how long the call may long-poll, on top of the request
// timeout.
func (c *Client) queueCall(ctx context.Context, topic string, part int32, wait time.Duration, f func(ctx context.Context, qc runnelpb.QueuesClient) error) error {
	var err error
	for hop := 0; hop < 3; hop++ {
		var addr string
		addr, err = c.meta.leaderFresh(ctx, topic, part)
		if err != nil {
			return err
		}
		var qc runnelpb.QueuesClient
		if qc, err = c.queuesClient(addr); err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, c.cfg.requestTimeout+wait)
		err = fromStatus(f(cctx, qc), addr)
		cancel()
		if err == nil {
			c.meta.reachable(addr)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var nl *NotLeaderError
		switch {
		case errors.As(err, &nl) && c.meta.follow(topic, part, nl):
			continue
		case isConnectError(err):
			c.meta.unreachable(addr)
			c.meta.refresh()
			return err
		case needsMetadata(err):
			c.meta.refresh()
			return err
		default:
			return err
		}
	}
	return err
}

// queuesClient returns the Queues API of the broker at addr.
func (c *Client) queuesClient(addr string) (runnelpb.QueuesClient, error) {
	return serviceClient(c, addr, runnelpb.NewQueuesClient)
}
