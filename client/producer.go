package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runnel-dev/runnel/record"
)

// The produce path. Produce encodes each record straight into the open
// batch of its partition (a record.Builder), so a record costs no
// allocation of its own. A batch is sealed when the next record would not
// fit in MaxBatchBytes. A partition is scheduled on the sink (sink.go) of
// its leader when it has something to send: a sealed batch, an open batch
// that has lingered, one a ProduceSync or Flush waits for, or a batch due
// for retry. The sink sends at most MaxInFlight batches per partition.
//
// Lock order: producer.mu, then topicProducer.mu, then partProducer.mu,
// then metadata.mu (innermost); sink.mu, stream.mu and producer.freeMu are
// never held with any other.

// Produce buffers r for sending to its topic and calls promise, from a
// goroutine of the client, once r is acked (with r.Offset and r.Partition
// set) or has failed. promise may be nil; it must be quick and must not
// block, as it runs on the goroutine that reads broker answers (a Produce
// from inside a promise can block on a full buffer that only that goroutine
// would free).
//
// Produce blocks while the client's buffer is full (MaxBufferedBytes) and,
// the first time it sees a topic, while it learns the topic's partition
// count; if ctx ends first, promise gets ctx's error. Once buffered, r is
// retried on retriable errors until DeliveryTimeout passes or ctx ends.
// r must not be modified until promise is called.
func (c *Client) Produce(ctx context.Context, r *Record, promise func(*Record, error)) {
	c.prod.produce(ctx, r, promise, false)
}

// ProduceSync produces recs and waits until each is acked or has failed.
// On success every record has its Partition and Offset set. The error joins
// the distinct failures, each naming its topic and partition.
func (c *Client) ProduceSync(ctx context.Context, recs ...*Record) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		seen = map[string]bool{}
	)
	wg.Add(len(recs))
	promise := func(_ *Record, err error) {
		if err != nil {
			mu.Lock()
			// Records of one batch share one error; report it once.
			if msg := err.Error(); !seen[msg] {
				seen[msg] = true
				errs = append(errs, err)
			}
			mu.Unlock()
		}
		wg.Done()
	}
	for _, r := range recs {
		c.prod.produce(ctx, r, promise, true)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Flush sends every buffered record at once, without waiting for Linger,
// and waits until none is left buffered or ctx ends. Records produced while
// Flush waits are waited for too.
func (c *Client) Flush(ctx context.Context) error {
	return c.prod.flush(ctx)
}

// producer holds the client's produce state.
type producer struct {
	c        *Client
	flushing atomic.Int32

	freeMu sync.Mutex
	free   []*batch // resolved batches for reuse

	mu       sync.Mutex
	closed   bool
	buffered int64         // bytes of records produced and not yet resolved
	records  int64         // number of them
	space    chan struct{} // closed when bytes are released; nil when no one waits
	idle     chan struct{} // closed when records drops to 0; nil when no one waits
	// id is this client's idempotent producer id, random per client.
	id     int64
	topics map[string]*topicProducer
	sinks  map[string]*sink       // by broker address
	parked map[*partProducer]bool // partitions waiting for a leader
}

// topicProducer holds a topic's partitioner and partitions.
type topicProducer struct {
	name string

	mu    sync.Mutex
	part  TopicPartitioner
	parts []*partProducer
}

// partProducer buffers the batches of one partition.
type partProducer struct {
	p         *producer
	topic     string
	partition int32
	scheduled atomic.Bool // on a sink's ready list or parked
	linger    *time.Timer
	retry     *time.Timer

	mu sync.Mutex
	// epoch and seq are the idempotent producer's epoch and next sequence
	// number for this partition. A batch that fails for good after it was
	// sent leaves a gap the partition would refuse, so the epoch moves on
	// and the sequence starts again at 0.
	epoch    int16
	seq      int32
	open     *batch   // accumulating records
	queue    []*batch // sealed or retried batches, oldest first
	inflight int
	retryAt  time.Time
}

// pending is one buffered record.
type pending struct {
	r       *Record
	promise func(*Record, error)
	ctx     context.Context
}

// batch is one record batch on its way to a partition.
type batch struct {
	pp       *partProducer
	b        record.Builder
	recs     []pending
	bytes    int64 // buffer bytes the records hold
	deadline time.Time
	data     record.Batch // the built batch, once sent
	full     bool         // sealed because the next record did not fit
	lingered bool         // Linger has passed since the first record
	urgent   bool         // a ProduceSync waits for it
	inflight bool
	sentAt   time.Time
	timeout  time.Duration // the request timeout it was last sent with
	attempts int
	// refusalLogged is set once a refusal for a broker's bound
	// (ErrResourceExhausted) has been logged for this batch.
	refusalLogged bool
	hops          int // retries in a row sent at once to another broker
	lastErr       error
}

func (p *producer) init(c *Client) {
	p.c = c
	p.id = newProducerID()
	p.topics = make(map[string]*topicProducer)
	p.sinks = make(map[string]*sink)
	p.parked = make(map[*partProducer]bool)
}

func (p *producer) produce(ctx context.Context, r *Record, promise func(*Record, error), urgent bool) {
	if promise == nil {
		promise = func(*Record, error) {}
	}
	if r.Timestamp.IsZero() {
		r.Timestamp = time.Now()
	}
	rec := r.encodable()
	size := int64(record.Size(&rec))

	tp, err := p.topic(ctx, r.Topic)
	if err != nil {
		promise(r, err)
		return
	}
	if err := p.reserve(ctx, size); err != nil {
		promise(r, fmt.Errorf("produce to %s: %w", r.Topic, err))
		return
	}
	tp.mu.Lock()
	n := len(tp.parts)
	part := tp.part.Partition(r, n)
	if part < 0 || part >= n {
		tp.mu.Unlock()
		p.release(size, 1)
		promise(r, partitionNotFound(r.Topic, int32(part), n))
		return
	}
	pp := tp.parts[part]
	tp.mu.Unlock()
	r.Partition = int32(part)
	pp.append(ctx, r, &rec, size, promise, urgent)
}

func partitionNotFound(topic string, partition int32, n int) error {
	return &Error{
		Kind:     ErrNotFound,
		Reason:   "PARTITION_NOT_FOUND",
		Message:  fmt.Sprintf("partition %d of topic %q not found; it has %d partitions", partition, topic, n),
		Metadata: map[string]string{"topic": topic, "partition": fmt.Sprint(partition), "partitions": fmt.Sprint(n)},
	}
}

// topic returns the producer of topic, learning its partition count first
// when it is new.
func (p *producer) topic(ctx context.Context, name string) (*topicProducer, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	tp := p.topics[name]
	p.mu.Unlock()
	if tp != nil {
		return tp, nil
	}
	n, err := p.c.meta.partitions(ctx, name)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if tp = p.topics[name]; tp == nil {
		tp = &topicProducer{name: name, part: p.c.cfg.partitioner.ForTopic(name)}
		p.topics[name] = tp
	}
	p.growLocked(tp, n)
	return tp, nil
}

// growLocked adds partition producers to tp up to n partitions.
func (p *producer) growLocked(tp *topicProducer, n int) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	for i := len(tp.parts); i < n; i++ {
		pp := &partProducer{p: p, topic: tp.name, partition: int32(i)}
		pp.linger = time.AfterFunc(time.Hour, pp.onLinger)
		pp.linger.Stop()
		pp.retry = time.AfterFunc(time.Hour, pp.schedule)
		pp.retry.Stop()
		tp.parts = append(tp.parts, pp)
	}
}

// reserve takes size bytes of the buffer, waiting for room.
func (p *producer) reserve(ctx context.Context, size int64) error {
	p.mu.Lock()
	for p.buffered > 0 && p.buffered+size > p.c.cfg.maxBufferedBytes {
		if p.closed {
			p.mu.Unlock()
			return ErrClosed
		}
		if p.space == nil {
			p.space = make(chan struct{})
		}
		ch := p.space
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-p.c.ctx.Done():
			return ErrClosed
		}
		p.mu.Lock()
	}
	p.buffered += size
	p.records++
	p.mu.Unlock()
	return nil
}

// release returns the buffer space and count of resolved records.
func (p *producer) release(bytes int64, n int) {
	p.mu.Lock()
	p.buffered -= bytes
	p.records -= int64(n)
	if p.space != nil {
		close(p.space)
		p.space = nil
	}
	if p.records == 0 && p.idle != nil {
		close(p.idle)
		p.idle = nil
	}
	p.mu.Unlock()
}

// maxFreeBatches bounds the resolved batches kept for reuse, whose grown
// buffers spare the next batches the cost of growing again. A sync.Pool
// would drop them at every GC, which a busy producer triggers often.
const maxFreeBatches = 8

func (p *producer) newBatch(pp *partProducer) *batch {
	var b *batch
	p.freeMu.Lock()
	if n := len(p.free); n > 0 {
		b = p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
	}
	p.freeMu.Unlock()
	if b == nil {
		b = new(batch)
	}
	b.pp = pp
	b.deadline = time.Now().Add(p.c.cfg.deliveryTimeout)
	return b
}

// recycle returns a resolved batch to the pool.
func (p *producer) recycle(b *batch) {
	clear(b.recs)
	*b = batch{b: b.b, recs: b.recs[:0]}
	b.b.Reset()
	p.freeMu.Lock()
	if len(p.free) < maxFreeBatches {
		p.free = append(p.free, b)
	}
	p.freeMu.Unlock()
}

// append adds one record to the partition's open batch.
func (pp *partProducer) append(ctx context.Context, r *Record, rec *record.Record, size int64, promise func(*Record, error), urgent bool) {
	maxBytes := pp.p.c.cfg.maxBatchBytes
	linger := pp.p.c.cfg.linger
	sched := urgent || linger == 0 || pp.p.flushing.Load() > 0

	pp.mu.Lock()
	b := pp.open
	if b != nil && b.b.Len()+int(size) > maxBytes {
		pp.sealLocked()
		b = nil
		sched = true
	}
	if b == nil {
		b = pp.p.newBatch(pp)
		pp.open = b
		if record.HeaderSize+int(size) > maxBytes {
			// Too large for any batch: it goes alone, and the broker judges it.
			sched = true
		} else if linger > 0 {
			pp.linger.Reset(linger)
		}
	}
	b.b.Append(rec)
	b.recs = append(b.recs, pending{r: r, promise: promise, ctx: ctx})
	b.bytes += size
	b.urgent = b.urgent || urgent
	if record.HeaderSize+int(size) > maxBytes {
		pp.sealLocked()
	}
	pp.mu.Unlock()
	if sched {
		pp.schedule()
	}
}

// sealLocked moves the open batch to the send queue.
func (pp *partProducer) sealLocked() {
	pp.open.full = true
	pp.queue = append(pp.queue, pp.open)
	pp.open = nil
}

// onLinger runs when the open batch has waited Linger.
func (pp *partProducer) onLinger() {
	pp.mu.Lock()
	if pp.open != nil {
		pp.open.lingered = true
	}
	pp.mu.Unlock()
	pp.schedule()
}

// schedule puts the partition on the ready list of its leader's sink, or
// parks it until the metadata names a leader.
func (pp *partProducer) schedule() {
	if !pp.scheduled.CompareAndSwap(false, true) {
		return
	}
	p := pp.p
	addr, err := p.c.meta.leader(pp.topic, pp.partition)
	if err != nil {
		p.park(pp)
		return
	}
	s := p.sink(addr)
	if s == nil {
		pp.scheduled.Store(false)
		return
	}
	s.enqueue(pp)
}

// park sets pp aside until the next metadata refresh, which it asks for.
func (p *producer) park(pp *partProducer) {
	p.mu.Lock()
	p.parked[pp] = true
	p.mu.Unlock()
	p.c.meta.refresh()
}

// sink returns the sink for the broker at addr, starting it on first use;
// nil once the client is closed.
func (p *producer) sink(addr string) *sink {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	s := p.sinks[addr]
	if s == nil {
		s = newSink(p, addr)
		p.sinks[addr] = s
		p.c.goFunc(s.run)
	}
	return s
}

// rerouteAll runs after each metadata refresh: topics grow to their new
// partition counts, partitions whose leader changed and that wait to retry
// a batch retry it at once, and parked partitions go to their leaders, fail
// when their topic or partition is gone, or wait for the next refresh.
func (p *producer) rerouteAll(changed []topicPartition) {
	p.mu.Lock()
	for name, tp := range p.topics {
		if n, err := p.c.meta.cachedPartitions(name); err == nil {
			p.growLocked(tp, n)
		}
	}
	parked := p.parked
	p.parked = make(map[*partProducer]bool)
	var moved []*partProducer
	for _, c := range changed {
		if tp := p.topics[c.topic]; tp != nil {
			tp.mu.Lock()
			if int(c.partition) < len(tp.parts) {
				moved = append(moved, tp.parts[c.partition])
			}
			tp.mu.Unlock()
		}
	}
	p.mu.Unlock()

	for _, pp := range moved {
		if !parked[pp] {
			pp.retryNow()
		}
	}
	for pp := range parked {
		pp.scheduled.Store(false)
		_, err := p.c.meta.leader(pp.topic, pp.partition)
		switch {
		case errors.Is(err, ErrNotFound):
			pp.failQueued(err, false)
		case err != nil:
			pp.failQueued(err, true)
			if pp.hasBuffered() {
				pp.schedule()
			}
		default:
			pp.schedule()
		}
	}
}

// retryNow ends the partition's retry backoff, if any, and schedules it.
func (pp *partProducer) retryNow() {
	pp.mu.Lock()
	waiting := time.Now().Before(pp.retryAt)
	pp.retryAt = time.Time{}
	pp.mu.Unlock()
	if waiting {
		pp.schedule()
	}
}

func (pp *partProducer) hasBuffered() bool {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return pp.open != nil || len(pp.queue) > 0
}

// failQueued fails the batches of pp not in flight with err; with
// expiredOnly, only those past their delivery deadline.
func (pp *partProducer) failQueued(err error, expiredOnly bool) {
	now := time.Now()
	var failed []*batch
	pp.mu.Lock()
	keep := pp.queue[:0]
	for _, b := range pp.queue {
		if expiredOnly && now.Before(b.deadline) {
			keep = append(keep, b)
		} else {
			failed = append(failed, b)
		}
	}
	clear(pp.queue[len(keep):])
	pp.queue = keep
	if pp.open != nil && (!expiredOnly || !now.Before(pp.open.deadline)) {
		failed = append(failed, pp.open)
		pp.open = nil
	}
	pp.mu.Unlock()
	for _, b := range failed {
		pp.p.finish(b, -1, b.wrap(err))
	}
}

// take removes and returns the next batch to send, or nil when there is
// none now: nothing sendable, MaxInFlight reached, or backing off.
func (pp *partProducer) take(now time.Time) *batch {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.inflight >= pp.p.c.cfg.maxInFlight || now.Before(pp.retryAt) {
		return nil
	}
	var b *batch
	switch {
	case len(pp.queue) > 0:
		b = pp.queue[0]
		pp.queue = slices.Delete(pp.queue, 0, 1)
	case pp.open != nil && (pp.open.lingered || pp.open.urgent || pp.p.c.cfg.linger == 0 || pp.p.flushing.Load() > 0):
		b = pp.open
		pp.open = nil
	default:
		return nil
	}
	pp.inflight++
	b.inflight = true
	return b
}

// sendable reports whether take would return a batch, ignoring time.
func (pp *partProducer) sendableLocked() bool {
	if pp.inflight >= pp.p.c.cfg.maxInFlight {
		return false
	}
	return len(pp.queue) > 0 || (pp.open != nil && (pp.open.lingered || pp.open.urgent ||
		pp.p.c.cfg.linger == 0 || pp.p.flushing.Load() > 0))
}

// wrap adds the batch's topic and partition to err.
func (b *batch) wrap(err error) error {
	return fmt.Errorf("produce to %s/%d: %w", b.pp.topic, b.pp.partition, err)
}

// ctxDone returns the context error when the contexts of all the batch's
// records have ended, else nil.
func (b *batch) ctxDone() error {
	var first error
	for i := range b.recs {
		err := b.recs[i].ctx.Err()
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// finish resolves every record of b: acked at base when err is nil, else
// failed with err. It then frees b's buffer space.
func (p *producer) finish(b *batch, base int64, err error) {
	pp := b.pp
	if err != nil && b.data != nil {
		pp.mu.Lock()
		pp.epoch++
		pp.seq = 0
		pp.mu.Unlock()
	}
	for i := range b.recs {
		pr := &b.recs[i]
		if err == nil {
			pr.r.Offset = -1
			if base >= 0 {
				pr.r.Offset = base + int64(i)
			}
		}
		pr.promise(pr.r, err)
	}
	more := false
	if b.inflight {
		pp.mu.Lock()
		pp.inflight--
		more = pp.sendableLocked()
		pp.mu.Unlock()
	}
	bytes, n := b.bytes, len(b.recs)
	p.recycle(b)
	p.release(bytes, n)
	if more {
		pp.schedule()
	}
}

// maxHops bounds the retries in a row that go at once to another broker,
// so brokers that name each other as leader do not bounce a batch between
// them without a pause.
const maxHops = 2

// retryOrFail handles a failed send of b to the broker at from: it
// requeues b at the head of its partition after a backoff when err is
// retriable and time is left, and fails its records otherwise. A batch the
// partition wrote before (ErrDuplicateSequence) counts as acknowledged. A
// retry goes at once when it goes to another broker than from, because the
// answer named a new leader or from could not be reached, and when the
// broker gave up on the batch after waiting out its request timeout.
func (p *producer) retryOrFail(b *batch, err error, from string) {
	pp := b.pp
	var nl *NotLeaderError
	if errors.As(err, &nl) {
		p.c.meta.follow(pp.topic, pp.partition, nl)
	}
	if needsMetadata(err) {
		p.c.meta.refresh()
	}
	b.lastErr = err
	now := time.Now()
	switch {
	case errors.Is(err, ErrDuplicateSequence):
		p.finish(b, -1, nil)
		return
	case p.c.ctx.Err() != nil:
		p.finish(b, -1, b.wrap(fmt.Errorf("%w: %w", ErrClosed, err)))
		return
	case !Retriable(err):
		p.finish(b, -1, b.wrap(err))
		return
	case !now.Before(b.deadline):
		p.finish(b, -1, b.wrap(fmt.Errorf("delivery timeout %v passed: %w", p.c.cfg.deliveryTimeout, err)))
		return
	}
	if cerr := b.ctxDone(); cerr != nil {
		p.finish(b, -1, b.wrap(fmt.Errorf("%w (last error: %w)", cerr, err)))
		return
	}
	b.attempts++
	delay := retryAfter(err)
	if delay == 0 {
		next, lerr := p.c.meta.leader(pp.topic, pp.partition)
		switch {
		case lerr == nil && next != from && b.hops < maxHops:
			b.hops++
		case errors.Is(err, ErrUnknownOutcome) && b.timeout > 0 && now.Sub(b.sentAt) >= b.timeout:
			// The broker waited out the request timeout: that was the
			// pause.
			b.hops = 0
		default:
			b.hops = 0
			delay = p.retryBackoff(b.attempts, err)
		}
	}
	if !b.refusalLogged && errors.Is(err, ErrResourceExhausted) {
		b.refusalLogged = true
		// A broker over one of its bounds (a full disk, a queue's
		// backlog) refuses until someone acts, unlike an election that
		// ends by itself: say so once per batch rather than retrying in
		// silence until the delivery timeout.
		p.c.cfg.logger.Warn("runnel client: broker refuses produce; retrying until it accepts or the delivery timeout passes",
			"topic", pp.topic, "partition", pp.partition, "delivery_timeout", p.c.cfg.deliveryTimeout, "err", err)
	} else {
		p.c.cfg.logger.Debug("runnel client: retrying produce", "topic", pp.topic, "partition", pp.partition,
			"attempt", b.attempts, "delay", delay, "from", from, "err", err)
	}
	pp.mu.Lock()
	pp.inflight--
	b.inflight = false
	pp.queue = slices.Insert(pp.queue, 0, b)
	pp.retryAt = now.Add(delay)
	pp.mu.Unlock()
	pp.retry.Reset(delay)
}

// retryBackoff returns the delay before retry attempt n after err. While a
// partition's leader moves (no leader yet, not the leader, unreachable),
// the retries that ask for the new one wait at most 5 times the minimum
// backoff, so writes resume soon after an election.
func (p *producer) retryBackoff(n int, err error) time.Duration {
	d := p.backoff(n)
	if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotLeader) {
		d = min(d, 5*p.c.cfg.backoffMin)
	}
	return d
}

// backoff returns the delay before retry attempt n (from 1): exponential
// from the minimum, capped at the maximum, with full jitter above the
// minimum.
func (p *producer) backoff(n int) time.Duration {
	lo, hi := p.c.cfg.backoffMin, p.c.cfg.backoffMax
	ceil := lo
	for i := 1; i < n && ceil < hi; i++ {
		ceil *= 2
	}
	ceil = min(ceil, hi)
	if ceil <= lo {
		return lo
	}
	return lo + rand.N(ceil-lo)
}

func (p *producer) flush(ctx context.Context) error {
	p.flushing.Add(1)
	defer p.flushing.Add(-1)
	p.mu.Lock()
	if p.records == 0 {
		p.mu.Unlock()
		return nil
	}
	if p.idle == nil {
		p.idle = make(chan struct{})
	}
	idle := p.idle
	var pps []*partProducer
	for _, tp := range p.topics {
		tp.mu.Lock()
		pps = append(pps, tp.parts...)
		tp.mu.Unlock()
	}
	p.mu.Unlock()
	for _, pp := range pps {
		if pp.hasBuffered() {
			pp.schedule()
		}
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("flush: %w", ctx.Err())
	}
}

// close fails every record still buffered with ErrClosed and stops the
// timers. In-flight batches fail as their streams end.
func (p *producer) close() {
	p.mu.Lock()
	p.closed = true
	var pps []*partProducer
	for _, tp := range p.topics {
		tp.mu.Lock()
		pps = append(pps, tp.parts...)
		tp.mu.Unlock()
	}
	if p.space != nil {
		close(p.space)
		p.space = nil
	}
	p.mu.Unlock()
	for _, pp := range pps {
		pp.linger.Stop()
		pp.retry.Stop()
		pp.failQueued(ErrClosed, false)
	}
}

// newProducerID returns a random non-negative 63-bit producer id, so two
// clients practically never share one.
func newProducerID() int64 { return rand.Int64() }
