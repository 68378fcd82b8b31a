package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/runnel-dev/runnel/proto/runnelpb"
	"github.com/runnel-dev/runnel/record"
)

// The group consumer. Two goroutines share a GroupConsumer: the session
// goroutine keeps the member's stream to the coordinator (join,
// heartbeats, new assignments) and the caller's goroutine, ranging over
// Records, owns everything else: it starts and stops the partition
// fetchers when the assignment changes, commits, and yields records. The
// session goroutine only stores the latest assignment and signals; the
// caller's goroutine applies it between two records, so a partition is
// revoked only after the record being processed is done and its offset
// committed.

// GroupOption configures JoinGroup.
type GroupOption func(*groupConfig)

type groupConfig struct {
	strategy       string
	sessionTimeout time.Duration
	autoCommit     time.Duration // 0: commit only with Commit
	startAt        Position
	clientID       string
	onAssigned     func(ctx context.Context, parts []TopicPartition)
	onRevoked      func(ctx context.Context, parts []TopicPartition)
}

// GroupStrategy sets how partitions are spread over members: "sticky"
// (default: partitions stay with their member while the group stays
// balanced) or "range" (contiguous ranges per topic, as Kafka's
// RangeAssignor). Every member of a group uses the same.
func GroupStrategy(s string) GroupOption { return func(c *groupConfig) { c.strategy = s } }

// SessionTimeout sets how long the member may go without a heartbeat
// before the coordinator gives its partitions to others. Default 10 s;
// 1 s to 5 min. A member whose stream breaks (the process died) loses its
// partitions at once.
func SessionTimeout(d time.Duration) GroupOption {
	return func(c *groupConfig) { c.sessionTimeout = d }
}

// AutoCommitInterval sets how often the offsets of processed records are
// committed (default 5 s). A record counts as processed once the loop
// over Records asks for the next one. Offsets are also committed when a
// partition is revoked and on Close.
func AutoCommitInterval(d time.Duration) GroupOption {
	return func(c *groupConfig) { c.autoCommit = d }
}

// ManualCommit turns automatic commits off: offsets are committed only by
// Commit (and, for revoked partitions and on Close, what Commit last
// covered is all that is committed).
func ManualCommit() GroupOption { return func(c *groupConfig) { c.autoCommit = 0 } }

// StartAt sets where a partition the group has no committed offset for
// starts: Start (the default), End, an offset or a time.
func StartAt(p Position) GroupOption { return func(c *groupConfig) { c.startAt = p } }

// GroupClientID sets the name the member shows in DescribeGroup.
func GroupClientID(id string) GroupOption { return func(c *groupConfig) { c.clientID = id } }

// OnAssigned sets a function called, on the goroutine ranging over
// Records, with the partitions the member starts consuming.
func OnAssigned(f func(ctx context.Context, parts []TopicPartition)) GroupOption {
	return func(c *groupConfig) { c.onAssigned = f }
}

// OnRevoked sets a function called, on the goroutine ranging over Records,
// with the partitions the member stops consuming, after their offsets are
// committed (with automatic commits) and before other members get them.
func OnRevoked(f func(ctx context.Context, parts []TopicPartition)) GroupOption {
	return func(c *groupConfig) { c.onRevoked = f }
}

// GroupConsumer is one member of a consumer group. Range over Records on
// one goroutine; Commit, Assignment and Close may be called from any.
type GroupConsumer struct {
	c      *Client
	group  string
	topics []string
	cfg    groupConfig

	ctx    context.Context // ends on Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// Shared between the session goroutine and the caller's.
	mu       sync.Mutex
	memberID string
	coord    string // address of the coordinator last joined
	latest   *groupAssignment
	assigned []TopicPartition // the assignment last received
	received int64            // its generation
	// assignedCh is closed and replaced when an assignment arrives.
	assignedCh chan struct{}
	lost       bool // the coordinator fenced the member: drop everything
	seeks      map[TopicPartition]Position
	owned      map[TopicPartition]bool // what the caller's goroutine holds
	fatal      error                   // the session ended for good
	signal     chan struct{}           // cap 1: a new assignment, lost or fatal
	heartbeat  chan struct{}           // cap 1: send a heartbeat now
	joined     chan struct{}           // closed at the first assignment or fatal error

	// Owned by the caller's goroutine (under mu where Commit reads them).
	parts      map[TopicPartition]*groupPart
	generation int64
	chunks     chan groupChunk
	cur        groupChunk
	it         record.Iter
	itOn       bool // it holds a batch being read
	rec        Record
	last       *groupPart // the part of the record yielded last
	lastOffset int64
	nextCommit time.Time
}

type groupAssignment struct {
	generation int64
	assigned   []TopicPartition
}

// groupPart is one partition the member consumes.
type groupPart struct {
	tp        TopicPartition
	cancel    context.CancelFunc
	done      chan struct{}
	next      int64 // the next offset to yield
	yielded   int64 // offset after the last record yielded
	processed int64 // offset after the last record processed
	committed int64 // offset last committed, -1 for none
}

// groupChunk is one fetch response of a partition, or its fetcher's error.
type groupChunk struct {
	part    *groupPart
	batches [][]byte
	err     error
}

// JoinGroup joins the consumer group and returns once the member has its
// first assignment. Range over Records to consume; Close to leave.
func (c *Client) JoinGroup(ctx context.Context, group string, topics []string, opts ...GroupOption) (*GroupConsumer, error) {
	cfg := groupConfig{strategy: "sticky", sessionTimeout: 10 * time.Second, autoCommit: 5 * time.Second, startAt: Start()}
	for _, o := range opts {
		o(&cfg)
	}
	if len(topics) == 0 {
		return nil, fmt.Errorf("join group %s: name at least one topic", group)
	}
	g := &GroupConsumer{
		c: c, group: group, topics: slices.Clone(topics), cfg: cfg,
		owned:      map[TopicPartition]bool{},
		signal:     make(chan struct{}, 1),
		heartbeat:  make(chan struct{}, 1),
		joined:     make(chan struct{}),
		assignedCh: make(chan struct{}),
		parts:      map[TopicPartition]*groupPart{},
		chunks:     make(chan groupChunk, 16),
	}
	g.ctx, g.cancel = context.WithCancel(c.ctx)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		g.sessionLoop()
	}()
	select {
	case <-g.joined:
	case <-ctx.Done():
		g.Close(context.Background())
		return nil, ctx.Err()
	}
	g.mu.Lock()
	err := g.fatal
	g.mu.Unlock()
	if err != nil {
		g.Close(context.Background())
		return nil, err
	}
	return g, nil
}

// MemberID returns the id the coordinator gave this member.
func (g *GroupConsumer) MemberID() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.memberID
}

// Assignment returns the partitions the coordinator last assigned to the
// member: those it consumes, or starts consuming at the next step of
// Records.
func (g *GroupConsumer) Assignment() []TopicPartition {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.assigned)
}

// sessionLoop keeps the member in the group until Close: it joins, and
// joins again with the same member id and the partitions it holds when
// the stream breaks or the coordinator moves.
func (g *GroupConsumer) sessionLoop() {
	attempts, follows := 0, 0
	lastJoin := time.Now()
	for g.ctx.Err() == nil {
		joinedNow, err := g.session()
		if g.ctx.Err() != nil {
			return
		}
		if joinedNow {
			attempts, lastJoin = 0, time.Now()
		}
		var nl *NotLeaderError
		switch {
		case errors.Is(err, ErrStaleGeneration):
			// The coordinator no longer knows this member (it timed out):
			// its partitions may be others' now. Drop them and join anew.
			g.c.cfg.logger.Info("runnel client: group member fenced; joining again", "group", g.group, "err", err)
			g.mu.Lock()
			g.memberID = ""
			g.received = 0
			g.lost = true
			g.owned = map[TopicPartition]bool{}
			g.assigned = nil
			g.mu.Unlock()
			g.notify()
			continue
		case errors.As(err, &nl) && nl.LeaderAddr != "":
			g.mu.Lock()
			g.coord = nl.LeaderAddr
			g.mu.Unlock()
			// Follow at once, but back off if nodes keep pointing
			// elsewhere while the controller leadership settles.
			if follows++; follows < 3 {
				continue
			}
			follows = 0
			if g.c.sleep(g.ctx, g.c.prod.backoff(1)) != nil {
				return
			}
			continue
		case Retriable(err) && time.Since(lastJoin) < max(g.c.cfg.deliveryTimeout, g.cfg.sessionTimeout):
		case Retriable(err):
			g.setFatal(fmt.Errorf("group %s: no coordinator reachable for %v: %w", g.group, time.Since(lastJoin).Round(time.Second), err))
			return
		default:
			g.setFatal(err)
			return
		}
		attempts++
		g.mu.Lock()
		g.coord = ""
		g.mu.Unlock()
		if g.c.sleep(g.ctx, g.c.prod.backoff(attempts)) != nil {
			return
		}
	}
}

// session runs one GroupSession stream until it ends. joined reports
// whether the coordinator answered the join.
func (g *GroupConsumer) session() (joined bool, err error) {
	g.mu.Lock()
	addr := g.coord
	join := &runnelpb.GroupJoin{
		Group: g.group, MemberId: g.memberID, ClientId: g.cfg.clientID, Topics: g.topics,
		Strategy: g.cfg.strategy, SessionTimeoutMs: g.cfg.sessionTimeout.Milliseconds(),
		Owned: toPBParts(sortedParts(g.owned)), Generation: g.received,
	}
	g.mu.Unlock()
	var (
		stream runnelpb.Groups_GroupSessionClient
		first  *runnelpb.GroupAssignment
		cancel context.CancelFunc
	)
	// Find the coordinator: the last one, then any broker. An answer
	// naming another coordinator ends this attempt; sessionLoop follows it.
	addrs := g.c.meta.brokerAddrs()
	if addr != "" {
		addrs = append([]string{addr}, addrs...)
	}
	for _, a := range addrs {
		gc, err := g.c.groupsClient(a)
		if err != nil {
			return false, err
		}
		// The stream's context is not g.ctx: a clean exit half-closes
		// the stream and waits for the coordinator to end it, so the
		// member has left when Close returns. Only the join is cut short
		// by Close.
		sctx, scancel := context.WithCancel(g.c.ctx)
		stopCut := context.AfterFunc(g.ctx, scancel)
		s, err := gc.GroupSession(sctx)
		if err == nil {
			err = s.Send(&runnelpb.GroupSessionRequest{Msg: &runnelpb.GroupSessionRequest_Join{Join: join}})
			if errors.Is(err, io.EOF) {
				// The stream ended: Recv has its status.
				err = nil
			}
		}
		var resp *runnelpb.GroupAssignment
		if err == nil {
			resp, err = s.Recv()
		}
		stopCut()
		if err != nil {
			scancel()
			err = fromStatus(err, a)
			if isConnectError(err) || errors.Is(err, ErrUnavailable) && addr == a && len(addrs) > 1 {
				continue
			}
			return false, err
		}
		stream, first, cancel = s, resp, scancel
		g.mu.Lock()
		g.coord = a
		g.mu.Unlock()
		break
	}
	if stream == nil {
		return false, &ConnectError{Addr: fmt.Sprint(addrs), Err: errors.New("no broker answered")}
	}
	defer cancel()
	g.setAssignment(first)
	interval := time.Duration(first.GetHeartbeatIntervalMs()) * time.Millisecond
	if interval <= 0 {
		interval = g.cfg.sessionTimeout / 3
	}
	recvErr := make(chan error, 1)
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			g.setAssignment(resp)
		}
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-g.heartbeat:
		case err := <-recvErr:
			return true, g.streamErr(err)
		case <-g.ctx.Done():
			// A clean exit: the coordinator hands the partitions on at
			// once. Wait briefly for it to end the stream.
			stream.CloseSend()
			select {
			case <-recvErr:
			case <-time.After(time.Second):
			}
			return true, nil
		}
		g.mu.Lock()
		owned := toPBParts(sortedParts(g.owned))
		g.mu.Unlock()
		if err := stream.Send(&runnelpb.GroupSessionRequest{Msg: &runnelpb.GroupSessionRequest_Heartbeat{Heartbeat: &runnelpb.GroupHeartbeat{Owned: owned}}}); err != nil {
			return true, g.streamErr(<-recvErr)
		}
	}
}

func (g *GroupConsumer) streamErr(err error) error {
	g.mu.Lock()
	addr := g.coord
	g.mu.Unlock()
	e := fromStatus(err, addr)
	var be *Error
	if errors.As(e, &be) || isConnectError(e) {
		return e
	}
	return &Error{Kind: ErrUnavailable, Reason: "STREAM_BROKEN", Message: fmt.Sprintf("group session with %s ended: %v", addr, err)}
}

func (g *GroupConsumer) setAssignment(resp *runnelpb.GroupAssignment) {
	g.mu.Lock()
	g.memberID = resp.GetMemberId()
	g.latest = &groupAssignment{generation: resp.GetGeneration(), assigned: fromPBParts(resp.GetAssigned())}
	g.assigned = sortParts(slices.Clone(g.latest.assigned))
	g.received = resp.GetGeneration()
	close(g.assignedCh)
	g.assignedCh = make(chan struct{})
	g.mu.Unlock()
	g.notify()
	select {
	case <-g.joined:
	default:
		close(g.joined)
	}
}

func (g *GroupConsumer) setFatal(err error) {
	g.mu.Lock()
	g.fatal = err
	g.mu.Unlock()
	g.notify()
	select {
	case <-g.joined:
	default:
		close(g.joined)
	}
}

func (g *GroupConsumer) notify() {
	select {
	case g.signal <- struct{}{}:
	default:
	}
}

func (g *GroupConsumer) heartbeatNow() {
	select {
	case g.heartbeat <- struct{}{}:
	default:
	}
}

// Records yields the records of the partitions assigned to the member,
// each partition in offset order, until ctx ends, Close is called or an
// error that retrying cannot fix (yielded last). The Record is valid only
// until the next iteration. Range over Records on one goroutine at a
// time; assignment changes are applied between two records.
func (g *GroupConsumer) Records(ctx context.Context) iter.Seq2[*Record, error] {
	return func(yield func(*Record, error) bool) {
		for {
			g.markProcessed()
			if err := g.apply(ctx); err != nil {
				yield(nil, err)
				return
			}
			if r := g.nextRecord(); r != nil {
				if !yield(r, nil) {
					return
				}
				continue
			}
			if err := g.wait(ctx); err != nil {
				if err != errStop {
					yield(nil, err)
				}
				return
			}
		}
	}
}

// errStop ends Records without an error.
var errStop = errors.New("stop")

// wait waits for a fetched chunk, a new assignment or an automatic commit
// falling due. It returns errStop when ctx ends or the consumer closes.
func (g *GroupConsumer) wait(ctx context.Context) error {
	var commitDue <-chan time.Time
	if g.cfg.autoCommit > 0 {
		t := time.NewTimer(max(time.Until(g.nextCommit), 0))
		defer t.Stop()
		commitDue = t.C
	}
	select {
	case ch := <-g.chunks:
		if ch.err != nil {
			return g.fetchFailed(ctx, ch)
		}
		if g.parts[ch.part.tp] == ch.part {
			g.cur, g.itOn = ch, false
		}
	case <-g.signal: // apply reads what changed
	case <-commitDue:
	case <-ctx.Done():
		return errStop
	case <-g.ctx.Done():
		return errStop
	}
	return nil
}

// markProcessed records that the record yielded last has been processed:
// the loop asked for the next one.
func (g *GroupConsumer) markProcessed() {
	if g.last == nil {
		return
	}
	g.mu.Lock()
	g.last.processed = max(g.last.processed, g.lastOffset+1)
	g.mu.Unlock()
	g.last = nil
}

// nextRecord returns the next record of the current chunk, or nil when it
// is used up.
func (g *GroupConsumer) nextRecord() *Record {
	for g.cur.part != nil {
		p := g.cur.part
		if g.parts[p.tp] != p {
			g.cur = groupChunk{} // revoked or restarted since it was fetched
			return nil
		}
		if !g.itOn {
			if len(g.cur.batches) == 0 {
				g.cur = groupChunk{}
				return nil
			}
			raw := record.Batch(g.cur.batches[0])
			g.cur.batches = g.cur.batches[1:]
			if len(raw) < record.HeaderSize {
				continue
			}
			g.it, g.itOn = raw.Iter(), true
		}
		if !g.it.Next() {
			g.itOn = false
			if err := g.it.Err(); err != nil {
				g.mu.Lock()
				if g.fatal == nil {
					g.fatal = fmt.Errorf("group %s: read %s: %w", g.group, p.tp, err)
				}
				g.mu.Unlock()
				g.cur = groupChunk{}
				return nil
			}
			continue
		}
		r := g.it.Record()
		if r.Offset < p.next {
			continue
		}
		p.next = r.Offset + 1
		g.rec = Record{Topic: p.tp.Topic, Partition: p.tp.Partition, Key: r.Key, Value: r.Value, Headers: r.Headers,
			Timestamp: time.UnixMilli(r.Timestamp), Offset: r.Offset}
		g.mu.Lock()
		p.yielded = r.Offset + 1
		g.mu.Unlock()
		g.last, g.lastOffset = p, r.Offset
		return &g.rec
	}
	return nil
}

// Seek moves where Records reads tp next: start, end, an offset or a
// time. It takes effect before the next record Records yields, and only
// while the member holds tp. Commits never move a group back: after a
// seek backwards the records are read again, but the committed offset
// stays until reading passes it (rewind a whole group with SeekGroup).
// It may be called from any goroutine.
func (g *GroupConsumer) Seek(tp TopicPartition, to Position) {
	g.mu.Lock()
	if g.seeks == nil {
		g.seeks = map[TopicPartition]Position{}
	}
	g.seeks[tp] = to
	g.mu.Unlock()
	g.notify()
}

// apply brings the partitions consumed in line with the latest assignment,
// carries out seeks, and commits when an automatic commit is due.
func (g *GroupConsumer) apply(ctx context.Context) error {
	g.mu.Lock()
	fatal, lost, asg, seeks := g.fatal, g.lost, g.latest, g.seeks
	g.lost, g.latest, g.seeks = false, nil, nil
	g.mu.Unlock()
	if fatal != nil {
		return fatal
	}
	for tp, to := range seeks {
		if p, ok := g.parts[tp]; ok {
			g.stopPart(p)
			g.startPart(tp, to, p.committed)
		}
	}
	if lost {
		// Fenced: the partitions may be others' already, so their
		// offsets are not committed.
		var gone []TopicPartition
		for tp, p := range g.parts {
			g.stopPart(p)
			gone = append(gone, tp)
		}
		if len(gone) > 0 && g.cfg.onRevoked != nil {
			g.cfg.onRevoked(ctx, sortParts(gone))
		}
	}
	if asg != nil {
		g.mu.Lock()
		g.generation = asg.generation
		g.mu.Unlock()
		want := map[TopicPartition]bool{}
		for _, tp := range asg.assigned {
			want[tp] = true
		}
		var revoked []*groupPart
		for tp, p := range g.parts {
			if !want[tp] {
				revoked = append(revoked, p)
			}
		}
		if len(revoked) > 0 {
			for _, p := range revoked {
				p.cancel()
				<-p.done
			}
			if g.cfg.autoCommit > 0 {
				if err := g.commit(ctx, revoked, false); err != nil {
					g.c.cfg.logger.Warn("runnel client: commit of revoked partitions failed", "group", g.group, "err", err)
				}
			}
			var tps []TopicPartition
			for _, p := range revoked {
				g.stopPart(p)
				tps = append(tps, p.tp)
			}
			if g.cfg.onRevoked != nil {
				g.cfg.onRevoked(ctx, sortParts(tps))
			}
		}
		var added []TopicPartition
		for tp := range want {
			if _, ok := g.parts[tp]; !ok {
				added = append(added, tp)
			}
		}
		if len(added) > 0 {
			committed, err := g.c.CommittedOffsets(ctx, g.group)
			if err != nil {
				// Try again at the next step: the assignment stays pending.
				g.mu.Lock()
				if g.latest == nil {
					g.latest = asg
				}
				g.mu.Unlock()
				g.notify()
				if ctx.Err() != nil || g.ctx.Err() != nil {
					return nil
				}
				g.c.cfg.logger.Warn("runnel client: read committed offsets", "group", g.group, "err", err)
				g.c.sleep(ctx, g.c.prod.backoff(1))
				return nil
			}
			for _, tp := range sortParts(added) {
				off, ok := committed[tp]
				from := g.cfg.startAt
				if ok {
					from = Offset(off)
				} else {
					off = -1
				}
				g.startPart(tp, from, off)
			}
			if g.cfg.onAssigned != nil {
				g.cfg.onAssigned(ctx, sortParts(added))
			}
		}
		g.publishOwned()
	}
	if g.cfg.autoCommit > 0 && !time.Now().Before(g.nextCommit) {
		g.nextCommit = time.Now().Add(g.cfg.autoCommit)
		if err := g.commit(ctx, slices.Collect(maps.Values(g.parts)), false); err != nil && !errors.Is(err, context.Canceled) {
			g.c.cfg.logger.Warn("runnel client: automatic commit failed", "group", g.group, "err", err)
		}
	}
	return nil
}

// publishOwned tells the session goroutine what the member holds, and has
// it heartbeat at once so released partitions move on quickly.
func (g *GroupConsumer) publishOwned() {
	owned := map[TopicPartition]bool{}
	for tp := range g.parts {
		owned[tp] = true
	}
	g.mu.Lock()
	g.owned = owned
	g.mu.Unlock()
	g.heartbeatNow()
}

// startPart starts fetching tp at from.
func (g *GroupConsumer) startPart(tp TopicPartition, from Position, committed int64) *groupPart {
	pctx, cancel := context.WithCancel(g.ctx)
	p := &groupPart{tp: tp, cancel: cancel, done: make(chan struct{}), committed: committed, next: -1, yielded: -1, processed: -1}
	if o, ok := from.OffsetValue(); ok {
		p.next = o
	}
	g.mu.Lock()
	g.parts[tp] = p
	g.mu.Unlock()
	go func() {
		defer close(p.done)
		err := g.c.fetchLoop(pctx, tp.Topic, tp.Partition, from, func(f *fetch, resp *runnelpb.FetchResponse) (bool, error) {
			if len(resp.GetBatches()) == 0 {
				return true, nil
			}
			select {
			case g.chunks <- groupChunk{part: p, batches: resp.GetBatches()}:
				return true, nil
			case <-pctx.Done():
				return false, nil
			}
		})
		if err != nil {
			select {
			case g.chunks <- groupChunk{part: p, err: err}:
			case <-pctx.Done():
			}
		}
	}()
	return p
}

// stopPart stops fetching p and forgets it.
func (g *GroupConsumer) stopPart(p *groupPart) {
	p.cancel()
	<-p.done
	g.mu.Lock()
	if g.parts[p.tp] == p {
		delete(g.parts, p.tp)
	}
	g.mu.Unlock()
	if g.cur.part == p {
		g.cur, g.itOn = groupChunk{}, false
	}
	if g.last == p {
		g.last = nil
	}
}

// fetchFailed handles a partition fetcher that gave up. An offset out of
// range (the committed offset was dropped by retention, or is past the
// end) restarts the partition at the start or end of its log; other
// errors end Records.
func (g *GroupConsumer) fetchFailed(ctx context.Context, ch groupChunk) error {
	p := ch.part
	if g.parts[p.tp] != p {
		return nil
	}
	var oor *OffsetOutOfRangeError
	if !errors.As(ch.err, &oor) {
		return fmt.Errorf("group %s: %w", g.group, ch.err)
	}
	from := Start()
	if oor.Offset >= oor.End {
		from = End()
	}
	g.c.cfg.logger.Warn("runnel client: group offset out of range; restarting the partition", "group", g.group,
		"partition", p.tp.String(), "offset", oor.Offset, "start", oor.Start, "end", oor.End, "from", from.String())
	g.stopPart(p)
	g.startPart(p.tp, from, p.committed)
	return nil
}

// commit commits the positions of parts: what was processed, or with
// yielded everything handed out. Partitions with nothing new are skipped.
func (g *GroupConsumer) commit(ctx context.Context, parts []*groupPart, yielded bool) error {
	err := g.commitOnce(ctx, parts, yielded)
	if !errors.Is(err, ErrStaleGeneration) {
		return err
	}
	// The coordinator does not know the member (yet) in the generation
	// the commit carried: it moved and the member is joining it again,
	// or a rebalance is under way. Once the session has a newer
	// assignment, the commit is tried once more for what the member
	// still holds.
	g.mu.Lock()
	seen, changed := g.received, g.assignedCh
	g.mu.Unlock()
	wait := time.NewTimer(g.cfg.sessionTimeout)
	defer wait.Stop()
	for {
		select {
		case <-changed:
		case <-wait.C:
			return err
		case <-ctx.Done():
			return err
		case <-g.ctx.Done():
			return err
		}
		g.mu.Lock()
		received := g.received
		changed = g.assignedCh
		held := map[TopicPartition]bool{}
		for _, tp := range g.assigned {
			held[tp] = true
		}
		g.mu.Unlock()
		if received == seen {
			continue
		}
		var still []*groupPart
		for _, p := range parts {
			if held[p.tp] {
				still = append(still, p)
			}
		}
		return g.commitOnce(ctx, still, yielded)
	}
}

func (g *GroupConsumer) commitOnce(ctx context.Context, parts []*groupPart, yielded bool) error {
	g.mu.Lock()
	member := g.memberID
	addr := g.coord
	var offs []*runnelpb.PartitionOffset
	var sent []*groupPart
	var at []int64
	for _, p := range parts {
		pos := p.processed
		if yielded {
			pos = p.yielded
		}
		if pos < 0 || pos <= p.committed {
			continue
		}
		offs = append(offs, &runnelpb.PartitionOffset{Topic: p.tp.Topic, Partition: p.tp.Partition, Offset: pos})
		sent, at = append(sent, p), append(at, pos)
	}
	// The latest generation the coordinator sent: the member holds these
	// partitions in it too, or the coordinator refuses the commit.
	generation := max(g.generation, g.received)
	g.mu.Unlock()
	if len(offs) == 0 {
		return nil
	}
	req := &runnelpb.CommitOffsetsRequest{Group: g.group, MemberId: member, Generation: generation, Offsets: offs}
	err := g.c.groupsCallAt(ctx, addr, func(ctx context.Context, addr string, gc runnelpb.GroupsClient) error {
		return g.c.commits.commit(ctx, addr, gc, req)
	})
	if err != nil {
		return err
	}
	g.mu.Lock()
	for i, p := range sent {
		p.committed = max(p.committed, at[i])
	}
	g.mu.Unlock()
	return nil
}

// Commit commits the offsets of every record Records has yielded so far,
// the current one included. Call it from the loop over Records after
// processing, or after the loop. It fails with ErrStaleGeneration when
// the member lost a partition to another member meanwhile.
func (g *GroupConsumer) Commit(ctx context.Context) error {
	g.mu.Lock()
	parts := make([]*groupPart, 0, len(g.parts))
	for _, p := range g.parts {
		parts = append(parts, p)
	}
	g.mu.Unlock()
	return g.commit(ctx, parts, true)
}

// Close commits the offsets of processed records (with automatic commits),
// leaves the group so that its partitions move to other members at once,
// and stops the member's goroutines. Call it after ranging over Records
// has ended.
func (g *GroupConsumer) Close(ctx context.Context) error {
	var err error
	if g.cfg.autoCommit > 0 && g.ctx.Err() == nil {
		g.markProcessed()
		g.mu.Lock()
		parts := slices.Collect(maps.Values(g.parts))
		g.mu.Unlock()
		err = g.commit(ctx, parts, false)
	}
	g.cancel()
	for _, p := range g.parts {
		<-p.done
	}
	g.wg.Wait()
	return err
}

func sortedParts(m map[TopicPartition]bool) []TopicPartition {
	return sortParts(slices.Collect(maps.Keys(m)))
}

func sortParts(ps []TopicPartition) []TopicPartition {
	slices.SortFunc(ps, func(a, b TopicPartition) int {
		if a.Topic != b.Topic {
			if a.Topic < b.Topic {
				return -1
			}
			return 1
		}
		return int(a.Partition - b.Partition)
	})
	return ps
}
