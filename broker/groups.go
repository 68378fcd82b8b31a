package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/runnel-dev/runnel/consumergroup"
)

// Consumer group coordination. A node's coordinator holds the membership
// of the groups it coordinates (soft state: members join again after a
// coordinator change, see consumergroup.Group.Recover) and writes their
// committed offsets to an offsetStore, which is durable: a file on a
// single node, the controller raft group in a cluster.
//
// Every group operation runs under one mutex; they are map lookups and a
// few slices, cheap next to the RPC that carries them. A member's stream
// waits on its session's notify channel and sends the member its new
// assignment when the group changes.

type tp = consumergroup.TopicPartition

// Bounds of a member's session timeout.
const (
	minSessionTimeout     = time.Second
	maxSessionTimeout     = 5 * time.Minute
	defaultSessionTimeout = 10 * time.Second
)

// offsetStore keeps committed offsets durably.
type offsetStore interface {
	// commitOffsets makes offs durable before it returns. Without force an
	// offset below the committed one is ignored, so a member's commits
	// never move a group back; force (a seek) sets it.
	commitOffsets(ctx context.Context, group string, offs map[tp]int64, force bool) error
	// offsets returns a group's committed offsets.
	offsets(group string) map[tp]int64
	// groups lists the groups with committed offsets.
	groups() []string
	// deleteOffsets forgets a group's offsets.
	deleteOffsets(ctx context.Context, group string) error
}

// coordinator runs the consumer groups of a node.
type coordinator struct {
	store  offsetStore
	counts func(topic string) int32 // partition count, 0 for no such topic
	logger *slog.Logger
	now    func() time.Time
	// takeover is when this coordinator started; a group it finds offsets
	// for is held for a default session timeout from then (Recover).
	takeover time.Time
	// seen are the groups created since takeover.
	seen map[string]bool

	mu     sync.Mutex
	groups map[string]*coordGroup
	wake   chan struct{}
	// done is closed when the coordinator stops (its node lost the
	// controller leadership); sessions end with stoppedErr.
	done     chan struct{}
	stopOnce sync.Once
	stopErr  error
}

type coordGroup struct {
	g        *consumergroup.Group
	sessions map[string]*memberSession
}

// memberSession is one member's stream, told when its assignment changed.
type memberSession struct {
	group, member string
	notify        chan struct{}
	sent          consumergroup.Assignment
}

func newCoordinator(store offsetStore, counts func(string) int32, logger *slog.Logger) *coordinator {
	return &coordinator{
		store:    store,
		counts:   counts,
		logger:   logger,
		now:      time.Now,
		takeover: time.Now(),
		groups:   map[string]*coordGroup{},
		seen:     map[string]bool{},
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
}

// stop ends the coordinator: its sessions end with err, and members join
// again wherever err sends them.
func (c *coordinator) stop(err error) {
	c.stopOnce.Do(func() {
		c.mu.Lock()
		c.stopErr = err
		c.mu.Unlock()
		close(c.done)
	})
}

func (c *coordinator) stoppedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopErr
}

// joinArgs is a member joining.
type joinArgs struct {
	group, memberID, clientID string
	topics                    []string
	strategy                  string
	sessionTimeout            time.Duration
	owned                     []tp
	ownedSince                int64
}

// groupLocked returns the group, creating it if create is set.
func (c *coordinator) groupLocked(name string, create bool) *coordGroup {
	cg, ok := c.groups[name]
	if ok || !create {
		return cg
	}
	// Generations start above the time in milliseconds, so a coordinator
	// that takes over a group never hands out a generation the previous
	// one used, and commits fenced by it stay stale.
	g := consumergroup.New(name, c.now().UnixMilli())
	if !c.seen[name] && len(c.store.offsets(name)) > 0 {
		// The group may have had members under the previous coordinator
		// (or before this node restarted): give them a session timeout
		// to rejoin with what they hold.
		g.Recover(c.takeover.Add(defaultSessionTimeout))
	}
	c.seen[name] = true
	cg = &coordGroup{g: g, sessions: map[string]*memberSession{}}
	c.groups[name] = cg
	return cg
}

// join adds a member. A member without an id gets a new one.
func (c *coordinator) join(a joinArgs) (*memberSession, consumergroup.Assignment, error) {
	if err := validateGroupName(a.group); err != nil {
		return nil, consumergroup.Assignment{}, err
	}
	if len(a.topics) == 0 {
		return nil, consumergroup.Assignment{}, errorf(ErrInvalidRequest, "group %s: subscribe to at least one topic", a.group)
	}
	if a.sessionTimeout == 0 {
		a.sessionTimeout = defaultSessionTimeout
	}
	if a.sessionTimeout < minSessionTimeout || a.sessionTimeout > maxSessionTimeout {
		return nil, consumergroup.Assignment{}, errorf(ErrInvalidRequest, "session timeout %v: use %v to %v", a.sessionTimeout, minSessionTimeout, maxSessionTimeout)
	}
	strategy, err := consumergroup.ParseStrategy(a.strategy)
	if err != nil {
		return nil, consumergroup.Assignment{}, errorf(ErrInvalidRequest, "%v", err)
	}
	for _, t := range a.topics {
		if c.counts(t) == 0 {
			return nil, consumergroup.Assignment{}, &TopicNotFoundError{Topic: t}
		}
	}
	if a.memberID == "" {
		a.memberID = newMemberID(a.clientID)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cg := c.groupLocked(a.group, true)
	for _, t := range a.topics {
		cg.g.SetPartitions(t, c.counts(t))
	}
	asg, err := cg.g.Join(c.now(), consumergroup.JoinRequest{
		MemberID: a.memberID, ClientID: a.clientID, Topics: a.topics, Strategy: strategy,
		SessionTimeout: a.sessionTimeout, Owned: a.owned, OwnedSince: a.ownedSince,
	})
	if err != nil {
		if errors.Is(err, consumergroup.ErrStrategyMismatch) {
			return nil, asg, errorf(ErrInvalidRequest, "%v", err)
		}
		return nil, asg, err
	}
	s, ok := cg.sessions[a.memberID]
	if !ok {
		s = &memberSession{group: a.group, member: a.memberID, notify: make(chan struct{}, 1)}
		cg.sessions[a.memberID] = s
	}
	c.changedLocked(cg)
	c.kick()
	return s, asg, nil
}

// heartbeat renews a member's session and reports what it holds.
func (c *coordinator) heartbeat(group, member string, owned []tp) (consumergroup.Assignment, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cg := c.groupLocked(group, false)
	if cg == nil {
		return consumergroup.Assignment{}, unknownMember(group, member)
	}
	// Topics may have grown or gone since the last look.
	for _, t := range cg.g.Topics() {
		cg.g.SetPartitions(t, c.counts(t))
	}
	asg, err := cg.g.Heartbeat(c.now(), member, owned)
	if err != nil {
		return asg, unknownMember(group, member)
	}
	c.changedLocked(cg)
	return asg, nil
}

// leave removes a member at once: a clean exit or a closed stream.
func (c *coordinator) leave(s *memberSession) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cg := c.groupLocked(s.group, false)
	if cg == nil || cg.sessions[s.member] != s {
		return
	}
	delete(cg.sessions, s.member)
	cg.g.Leave(s.member)
	c.changedLocked(cg)
	c.dropIfIdleLocked(s.group, cg)
}

// assignment returns what the session should be told, and whether it
// differs from what it was last told. ok is false once the member is
// gone from the group.
func (c *coordinator) assignment(s *memberSession) (asg consumergroup.Assignment, changed, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cg := c.groupLocked(s.group, false)
	if cg == nil || cg.sessions[s.member] != s {
		return asg, false, false
	}
	asg, err := cg.g.Assignment(s.member)
	if err != nil {
		return asg, false, false
	}
	if sameAssignment(asg, s.sent) {
		return asg, false, true
	}
	s.sent = asg
	return asg, true, true
}

// changedLocked wakes every session of the group; each finds out whether
// its own assignment changed.
func (c *coordinator) changedLocked(cg *coordGroup) {
	for _, s := range cg.sessions {
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
}

func (c *coordinator) dropIfIdleLocked(name string, cg *coordGroup) {
	if cg.g.Empty() && len(cg.sessions) == 0 {
		delete(c.groups, name)
	}
}

// kick wakes the expiry loop so it looks at the new deadlines.
func (c *coordinator) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// run expires silent members until stop is closed.
func (c *coordinator) run(stop <-chan struct{}) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := c.now()
		next := c.expire(now)
		timer.Reset(max(next.Sub(now), time.Millisecond))
		select {
		case <-timer.C:
		case <-c.wake:
		case <-stop:
			return
		case <-c.done:
			return
		}
	}
}

// expire removes the members whose session ran out by now and returns
// when to look again.
func (c *coordinator) expire(now time.Time) (next time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	next = now.Add(time.Hour)
	for name, cg := range c.groups {
		gen := cg.g.Generation()
		unowned := len(cg.g.Unowned())
		for _, id := range cg.g.Expire(now) {
			c.logger.Info("group member timed out", "group", name, "member", id)
			delete(cg.sessions, id)
		}
		if cg.g.Generation() != gen || len(cg.g.Unowned()) != unowned {
			c.changedLocked(cg)
		}
		if d, ok := cg.g.NextDeadline(); ok && d.Before(next) {
			next = d
		}
		c.dropIfIdleLocked(name, cg)
	}
	return next
}

// offsetCommit is one partition's committed offset: the next record the
// group will read.
type offsetCommit struct {
	tp     tp
	offset int64
}

// commit writes a member's offsets. A commit without a member id is
// accepted only while the group has no members (a consumer managing its
// own partitions, as Kafka allows).
func (c *coordinator) commit(ctx context.Context, group, member string, generation int64, offs []offsetCommit) error {
	if err := validateGroupName(group); err != nil {
		return err
	}
	m := make(map[tp]int64, len(offs))
	for _, o := range offs {
		if o.offset < 0 {
			return errorf(ErrInvalidRequest, "group %s: offset %d for %s; commit the offset of the next record to read (0 or more)", group, o.offset, o.tp)
		}
		if n := c.counts(o.tp.Topic); o.tp.Partition < 0 || o.tp.Partition >= n {
			if n == 0 {
				return &TopicNotFoundError{Topic: o.tp.Topic}
			}
			return &PartitionNotFoundError{Topic: o.tp.Topic, Partition: o.tp.Partition, Partitions: int(n)}
		}
		m[o.tp] = o.offset
	}
	c.mu.Lock()
	cg := c.groupLocked(group, false)
	var err error
	switch {
	case member == "" && cg != nil && !cg.g.Empty():
		err = errorf(ErrStaleGeneration, "group %s has members; commit as one of them (with its member id and generation)", group)
	case member != "":
		if cg == nil {
			err = unknownMember(group, member)
			break
		}
		for _, o := range offs {
			if e := cg.g.CheckCommit(member, generation, o.tp); e != nil {
				err = fenced(e)
				break
			}
		}
	}
	c.mu.Unlock()
	if err != nil {
		return err
	}
	// A commit checked here can race with a rebalance that moves the
	// partition before it is durable; the new owner starts from the
	// offset committed before or this one, and both are offsets the old
	// owner had processed up to: at-least-once holds.
	return c.store.commitOffsets(ctx, group, m, false)
}

// groupView is a group as describe shows it.
type groupView struct {
	name       string
	strategy   string
	generation int64
	members    []consumergroup.MemberInfo
	offsets    map[tp]int64
	topics     []string
	// rebalancing is set while a partition is revoking or has no owner.
	rebalancing bool
}

func (c *coordinator) describe(name string) (groupView, bool) {
	v := groupView{name: name, offsets: c.store.offsets(name)}
	c.mu.Lock()
	cg := c.groupLocked(name, false)
	if cg != nil {
		v.strategy = string(cg.g.Strategy())
		v.generation = cg.g.Generation()
		v.members = cg.g.Members()
		v.topics = cg.g.Topics()
		v.rebalancing = len(cg.g.Unowned()) > 0
		for _, m := range v.members {
			if len(m.Revoking) > 0 {
				v.rebalancing = true
			}
		}
	}
	c.mu.Unlock()
	return v, cg != nil || len(v.offsets) > 0
}

// list returns the groups with members or committed offsets, sorted.
func (c *coordinator) list() []string {
	set := map[string]bool{}
	for _, g := range c.store.groups() {
		set[g] = true
	}
	c.mu.Lock()
	for g := range c.groups {
		set[g] = true
	}
	c.mu.Unlock()
	return slices.Sorted(maps.Keys(set))
}

// seek sets a group's offsets; refused while the group has members, whose
// commits would race with it.
func (c *coordinator) seek(ctx context.Context, group string, offs map[tp]int64) error {
	if err := c.requireEmpty(group, "seek"); err != nil {
		return err
	}
	return c.store.commitOffsets(ctx, group, offs, true)
}

// deleteGroup forgets a group's offsets; refused while it has members.
func (c *coordinator) deleteGroup(ctx context.Context, group string) error {
	if err := c.requireEmpty(group, "delete"); err != nil {
		return err
	}
	if _, ok := c.describe(group); !ok {
		return &GroupNotFoundError{Group: group}
	}
	return c.store.deleteOffsets(ctx, group)
}

func (c *coordinator) requireEmpty(group, what string) error {
	if err := validateGroupName(group); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cg := c.groupLocked(group, false); cg != nil && !cg.g.Empty() {
		return errorf(ErrGroupActive, "group %s has %d live member(s); stop them before you %s it", group, len(cg.g.Members()), what)
	}
	return nil
}

func unknownMember(group, member string) error {
	return errorf(ErrStaleGeneration, "member %s is not in group %s (it left or timed out); join again", member, group)
}

func fenced(err error) error {
	return errorf(ErrStaleGeneration, "%v", err)
}

func newMemberID(clientID string) string {
	var b [8]byte
	rand.Read(b[:])
	if clientID == "" {
		clientID = "member"
	}
	return clientID + "-" + hex.EncodeToString(b[:])
}

func sameAssignment(a, b consumergroup.Assignment) bool {
	return a.Generation == b.Generation && slices.Equal(a.Assigned, b.Assigned) && slices.Equal(a.Revoking, b.Revoking)
}

// validateGroupName checks a group name: the rules of topic names.
func validateGroupName(name string) error {
	if err := validateTopicName(name); err != nil {
		return errorf(ErrInvalidRequest, "group name %q: %s", name, groupNameRule)
	}
	return nil
}

const groupNameRule = "use 1 to 249 characters of a-z, A-Z, 0-9, '.', '_' and '-'"

// GroupNotFoundError is a group with neither members nor offsets.
type GroupNotFoundError struct{ Group string }

func (e *GroupNotFoundError) Error() string {
	return fmt.Sprintf("group %q not found; see the groups with: runnel group list", e.Group)
}

// Is reports whether target is ErrGroupNotFound.
func (e *GroupNotFoundError) Is(target error) bool { return target == ErrGroupNotFound }

// NotCoordinatorError says which node coordinates the groups: in a
// cluster, the controller leader.
type NotCoordinatorError struct {
	LeaderID   int32
	LeaderAddr string
}

func (e *NotCoordinatorError) Error() string {
	if e.LeaderID == 0 {
		return "no node coordinates consumer groups right now (the controller has no leader); retry shortly"
	}
	return fmt.Sprintf("this node does not coordinate consumer groups; node %d at %s does", e.LeaderID, e.LeaderAddr)
}

// Is reports whether target is ErrNotCoordinator.
func (e *NotCoordinatorError) Is(target error) bool { return target == ErrNotCoordinator }

// offsetsView returns where this node reads committed offsets from, nil
// when it has none yet.
func (b *Broker) offsetsView() offsetStore {
	if b.cluster != nil {
		return b.cluster.offsetsView()
	}
	if b.groups == nil {
		return nil
	}
	return b.groups.store
}
