// Package consumergroup is the state of a consumer group: its members,
// which partition each may consume, and the fences that keep a member
// that lost a partition from committing for it; and, in Queue, the lease
// state of a queue group on one partition (work-queue semantics).
//
// A Group is a synchronous, deterministic state machine: every method
// takes the current time as an argument and nothing happens in the
// background, so the coordinator (broker) drives it from one goroutine and
// tests drive it from a script.
//
// # Incremental assignment
//
// Each partition of the subscribed topics has a target member (what the
// strategy wants) and an owner (the member allowed to consume it now). A
// partition whose target changes stays with its owner, listed as
// revoking, until the owner reports it no longer holds it (having
// committed its progress), leaves or times out; only then does the new
// target become its owner. So a partition is never consumed by two
// members at once, and partitions that do not move are never revoked.
//
// # Fencing
//
// Every change of membership, subscriptions or partition counts starts a
// new generation. A member may commit offsets only for a partition it
// owns, and only with the generation it was given the partition in or a
// later one: a commit from a member that timed out, or one sent for an
// earlier ownership of the same partition, is refused.
package consumergroup

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// TopicPartition names one partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

func (tp TopicPartition) String() string { return fmt.Sprintf("%s/%d", tp.Topic, tp.Partition) }

func compareTP(a, b TopicPartition) int {
	if c := strings.Compare(a.Topic, b.Topic); c != 0 {
		return c
	}
	return cmp.Compare(a.Partition, b.Partition)
}

// Strategy is how partitions are spread over members.
type Strategy string

const (
	// Sticky keeps every partition with its owner while the members stay
	// balanced (counts differ by at most one among members subscribed to
	// the same topics), and moves as few as possible when they change.
	Sticky Strategy = "sticky"
	// Range gives each member a contiguous range of every topic's
	// partitions, as Kafka's RangeAssignor does: members sorted by id,
	// the first members one extra when the count does not divide.
	Range Strategy = "range"
)

// ParseStrategy parses "sticky" or "range"; "" means sticky.
func ParseStrategy(s string) (Strategy, error) {
	switch Strategy(s) {
	case "", Sticky:
		return Sticky, nil
	case Range:
		return Range, nil
	}
	return "", fmt.Errorf("assignment strategy %q: use sticky or range", s)
}

// Errors a Group returns. The coordinator maps them to status codes.
var (
	// ErrUnknownMember: the member is not in the group (it left, timed out
	// or never joined). It must join again, and must not commit.
	ErrUnknownMember = errors.New("unknown member")
	// ErrNotOwner: the member does not own the partition it commits for.
	ErrNotOwner = errors.New("partition not owned by member")
	// ErrStaleGeneration: the commit carries a generation older than the
	// one the member was given the partition in.
	ErrStaleGeneration = errors.New("stale generation")
	// ErrStrategyMismatch: a member asked for a strategy other than the
	// one the group's members use.
	ErrStrategyMismatch = errors.New("assignment strategy mismatch")
)

// JoinRequest is a member joining, or joining again after a coordinator
// change or a lost stream.
type JoinRequest struct {
	// MemberID is unique in the group; the coordinator chooses it for a
	// new member and the member keeps it when it joins again.
	MemberID string
	// ClientID is the member's self-description, for describe.
	ClientID string
	// Topics is the subscription.
	Topics []string
	// Strategy is the strategy the member wants; it must match the group's
	// while the group has members.
	Strategy Strategy
	// SessionTimeout is how long the member may stay silent.
	SessionTimeout time.Duration
	// Owned are partitions the member holds from before (it is joining a
	// new coordinator). They stay with it unless another member claimed
	// them first.
	Owned []TopicPartition
	// OwnedSince is the generation the member got Owned in, from the
	// previous coordinator; its commits for them are accepted from that
	// generation on. 0 means from this join's generation.
	OwnedSince int64
}

// Assignment is what a member is told.
type Assignment struct {
	// Generation is the group's generation. Commits carry it.
	Generation int64
	// Assigned are the partitions the member may consume.
	Assigned []TopicPartition
	// Revoking are partitions the member still owns but must give up: it
	// stops consuming them, commits its progress and reports them no
	// longer owned.
	Revoking []TopicPartition
}

// Group is one consumer group's membership and assignment.
type Group struct {
	name       string
	strategy   Strategy
	generation int64
	members    map[string]*member
	// partitions is the partition count of each subscribed topic, as the
	// coordinator last set it.
	partitions map[string]int32
	// target is where the strategy wants each partition; owner is who may
	// consume it now, and since which generation.
	target map[TopicPartition]string
	owner  map[TopicPartition]ownership
	// now is the latest time a caller passed in.
	now time.Time
	// holdUntil: before it, partitions nobody owns are not handed out (see
	// Recover).
	holdUntil time.Time
}

type member struct {
	id             string
	clientID       string
	topics         []string
	sessionTimeout time.Duration
	deadline       time.Time
	joined         int64 // generation of the join
}

type ownership struct {
	member string
	since  int64 // generation the member got the partition in
}

// New returns an empty group. generation is where its generations start
// counting: a coordinator that takes over a group starts above any
// generation the previous one can have handed out, so old commits stay
// stale.
func New(name string, generation int64) *Group {
	return &Group{
		name:       name,
		generation: generation,
		members:    map[string]*member{},
		partitions: map[string]int32{},
		target:     map[TopicPartition]string{},
		owner:      map[TopicPartition]ownership{},
	}
}

// Recover marks a group that a new coordinator took over: until the given
// time, partitions that no member owns are not handed out, so that
// members rejoining with what they hold (JoinRequest.Owned) keep it
// instead of the first member to rejoin getting everything. Pass the time
// by which every live member has rejoined or timed out: the takeover time
// plus the longest session timeout. Expire hands out what is left then.
func (g *Group) Recover(until time.Time) { g.holdUntil = until }

// Name returns the group's name.
func (g *Group) Name() string { return g.name }

// Generation returns the current generation.
func (g *Group) Generation() int64 { return g.generation }

// Strategy returns the group's strategy, "" while it has no members.
func (g *Group) Strategy() Strategy { return g.strategy }

// Empty reports whether the group has no members.
func (g *Group) Empty() bool { return len(g.members) == 0 }

// Topics returns the topics any member subscribes to, sorted. The
// coordinator keeps their partition counts current with SetPartitions.
func (g *Group) Topics() []string {
	set := map[string]bool{}
	for _, m := range g.members {
		for _, t := range m.topics {
			set[t] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// Join adds a member, or updates one that joins again, and rebalances.
func (g *Group) Join(now time.Time, req JoinRequest) (Assignment, error) {
	if req.MemberID == "" {
		return Assignment{}, errors.New("join without a member id")
	}
	g.tick(now)
	strategy, err := ParseStrategy(string(req.Strategy))
	if err != nil {
		return Assignment{}, err
	}
	if len(g.members) > 0 && strategy != g.strategy {
		if _, rejoin := g.members[req.MemberID]; !rejoin || len(g.members) > 1 {
			return Assignment{}, fmt.Errorf("%w: group %s uses %s; join with %s or wait until its members leave",
				ErrStrategyMismatch, g.name, g.strategy, g.strategy)
		}
	}
	if len(req.Topics) == 0 {
		return Assignment{}, fmt.Errorf("group %s: a member subscribes to at least one topic", g.name)
	}
	g.strategy = strategy
	topics := slices.Clone(req.Topics)
	slices.Sort(topics)
	topics = slices.Compact(topics)
	m, ok := g.members[req.MemberID]
	if !ok {
		m = &member{id: req.MemberID, joined: g.generation + 1}
		g.members[req.MemberID] = m
	}
	m.clientID = req.ClientID
	m.topics = topics
	m.sessionTimeout = req.SessionTimeout
	m.deadline = now.Add(req.SessionTimeout)
	// Adopt what the member held under a previous coordinator, unless
	// someone else holds it already.
	since := g.generation + 1
	if req.OwnedSince > 0 && req.OwnedSince < since {
		since = req.OwnedSince
	}
	for _, tp := range req.Owned {
		if _, taken := g.owner[tp]; !taken && g.exists(tp) && slices.Contains(m.topics, tp.Topic) {
			g.owner[tp] = ownership{member: m.id, since: since}
		}
	}
	g.rebalance()
	return g.assignment(m.id), nil
}

// Heartbeat renews a member's session. owned is what the member holds
// now: partitions it was revoking and no longer lists are released to
// their new target.
func (g *Group) Heartbeat(now time.Time, memberID string, owned []TopicPartition) (Assignment, error) {
	m, ok := g.members[memberID]
	if !ok {
		return Assignment{}, fmt.Errorf("%w %s in group %s", ErrUnknownMember, memberID, g.name)
	}
	g.tick(now)
	m.deadline = now.Add(m.sessionTimeout)
	holds := map[TopicPartition]bool{}
	for _, tp := range owned {
		holds[tp] = true
	}
	released := false
	for _, tp := range g.ownedBy(memberID) {
		if g.target[tp] != memberID && !holds[tp] {
			delete(g.owner, tp)
			released = true
		}
	}
	if released {
		g.handOver()
	}
	return g.assignment(memberID), nil
}

// Leave removes a member at once (a clean exit or a closed stream) and
// rebalances. Leaving twice is not an error.
func (g *Group) Leave(memberID string) {
	if _, ok := g.members[memberID]; !ok {
		return
	}
	g.remove(memberID)
	g.rebalance()
}

// Expire removes the members whose session ran out by now, rebalances if
// any did, and returns their ids.
func (g *Group) Expire(now time.Time) []string {
	held := g.holding()
	g.tick(now)
	var gone []string
	for id, m := range g.members {
		if !now.Before(m.deadline) {
			gone = append(gone, id)
		}
	}
	slices.Sort(gone)
	for _, id := range gone {
		g.remove(id)
	}
	if len(gone) > 0 {
		g.rebalance()
	} else if held && !g.holding() {
		g.handOver()
	}
	return gone
}

// NextDeadline returns when Expire should next be called: the earliest
// session deadline or the end of a Recover hold; false when there is
// nothing to wait for.
func (g *Group) NextDeadline() (time.Time, bool) {
	var next time.Time
	if g.holding() {
		next = g.holdUntil
	}
	for _, m := range g.members {
		if next.IsZero() || m.deadline.Before(next) {
			next = m.deadline
		}
	}
	return next, !next.IsZero()
}

// SetPartitions sets a topic's partition count (0 for a topic that does
// not exist) and rebalances if it changed.
func (g *Group) SetPartitions(topic string, n int32) {
	if g.partitions[topic] == n {
		return
	}
	if n == 0 {
		delete(g.partitions, topic)
	} else {
		g.partitions[topic] = n
	}
	g.rebalance()
}

// CheckCommit reports whether a member may commit an offset for tp with
// the given generation.
func (g *Group) CheckCommit(memberID string, generation int64, tp TopicPartition) error {
	if _, ok := g.members[memberID]; !ok {
		return fmt.Errorf("%w %s in group %s", ErrUnknownMember, memberID, g.name)
	}
	o, ok := g.owner[tp]
	if !ok || o.member != memberID {
		return fmt.Errorf("%w: %s does not own %s in group %s", ErrNotOwner, memberID, tp, g.name)
	}
	if generation < o.since {
		return fmt.Errorf("%w: commit for %s in group %s carries generation %d; the member owns it since generation %d",
			ErrStaleGeneration, tp, g.name, generation, o.since)
	}
	return nil
}

// Assignment returns a member's current assignment.
func (g *Group) Assignment(memberID string) (Assignment, error) {
	if _, ok := g.members[memberID]; !ok {
		return Assignment{}, fmt.Errorf("%w %s in group %s", ErrUnknownMember, memberID, g.name)
	}
	return g.assignment(memberID), nil
}

// Owner returns the member that owns tp, "" for none.
func (g *Group) Owner(tp TopicPartition) string { return g.owner[tp].member }

// MemberInfo describes one member.
type MemberInfo struct {
	ID       string
	ClientID string
	Topics   []string
	Assignment
	SessionTimeout time.Duration
	Deadline       time.Time
}

// Members describes the members, sorted by id.
func (g *Group) Members() []MemberInfo {
	var out []MemberInfo
	for _, id := range slices.Sorted(maps.Keys(g.members)) {
		m := g.members[id]
		out = append(out, MemberInfo{ID: id, ClientID: m.clientID, Topics: slices.Clone(m.topics),
			Assignment: g.assignment(id), SessionTimeout: m.sessionTimeout, Deadline: m.deadline})
	}
	return out
}

// Unowned returns the partitions of subscribed topics that no member owns,
// sorted. It is empty whenever the group has members and has settled.
func (g *Group) Unowned() []TopicPartition {
	var out []TopicPartition
	for _, tp := range g.allPartitions() {
		if _, ok := g.owner[tp]; !ok {
			out = append(out, tp)
		}
	}
	return out
}

func (g *Group) remove(id string) {
	delete(g.members, id)
	for tp, o := range g.owner {
		if o.member == id {
			delete(g.owner, tp)
		}
	}
}

// subscribed reports whether member id is in the group and subscribes to
// topic.
func (g *Group) subscribed(id, topic string) bool {
	m, ok := g.members[id]
	return ok && slices.Contains(m.topics, topic)
}

func (g *Group) exists(tp TopicPartition) bool {
	n, ok := g.partitions[tp.Topic]
	return ok && tp.Partition >= 0 && tp.Partition < n
}

// allPartitions lists the partitions of every subscribed topic whose count
// is known, sorted.
func (g *Group) allPartitions() []TopicPartition {
	var out []TopicPartition
	for _, t := range g.Topics() {
		for p := range g.partitions[t] {
			out = append(out, TopicPartition{t, p})
		}
	}
	return out
}

func (g *Group) ownedBy(id string) []TopicPartition {
	var out []TopicPartition
	for tp, o := range g.owner {
		if o.member == id {
			out = append(out, tp)
		}
	}
	slices.SortFunc(out, compareTP)
	return out
}

func (g *Group) assignment(id string) Assignment {
	a := Assignment{Generation: g.generation}
	for _, tp := range g.ownedBy(id) {
		if g.target[tp] == id {
			a.Assigned = append(a.Assigned, tp)
		} else {
			a.Revoking = append(a.Revoking, tp)
		}
	}
	return a
}

// rebalance starts a new generation: it computes the target assignment
// and hands over what is free.
func (g *Group) rebalance() {
	g.generation++
	if len(g.members) == 0 {
		g.strategy = ""
	}
	// Ownership of partitions that no longer exist ends at once: there is
	// nothing left to consume or commit.
	for tp := range g.owner {
		if !g.exists(tp) {
			delete(g.owner, tp)
		}
	}
	members := g.memberSubs()
	parts := g.allPartitions()
	switch g.strategy {
	case Range:
		g.target = assignRange(members, parts)
	default:
		// A partition stays with its owner where the balance allows,
		// which also calls off a move still under way; one without an
		// owner stays with its previous target.
		prev := map[TopicPartition]string{}
		for _, tp := range parts {
			if o, ok := g.owner[tp]; ok && g.subscribed(o.member, tp.Topic) {
				prev[tp] = o.member
			} else if id, ok := g.target[tp]; ok && g.subscribed(id, tp.Topic) {
				prev[tp] = id
			}
		}
		g.target = assignSticky(members, parts, prev)
	}
	g.handOver()
}

// tick moves the group's clock forward.
func (g *Group) tick(now time.Time) {
	if now.After(g.now) {
		g.now = now
	}
}

// holding reports whether a Recover hold is in force.
func (g *Group) holding() bool { return g.now.Before(g.holdUntil) }

// handOver makes each partition without an owner its target's, unless a
// Recover hold is in force.
func (g *Group) handOver() {
	if g.holding() {
		return
	}
	for tp, id := range g.target {
		if _, ok := g.owner[tp]; !ok {
			g.owner[tp] = ownership{member: id, since: g.generation}
		}
	}
}

// memberSubs returns the members' subscriptions by sorted member id.
func (g *Group) memberSubs() []subscription {
	var out []subscription
	for _, id := range slices.Sorted(maps.Keys(g.members)) {
		out = append(out, subscription{id: id, topics: g.members[id].topics})
	}
	return out
}
