package partition

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"
)

// Member is one server of a partition's raft configuration.
type Member struct {
	Server
	// Voter is false for a nonvoter: it receives the log but neither votes
	// nor counts towards a commit.
	Voter bool
}

// Membership is a group's raft configuration as its leader knows it: the
// latest one, which may not be committed yet.
type Membership struct {
	Members []Member
	// Term and Index order memberships read on leaders: the leader's raft
	// term and its last log index when it read the configuration. A
	// leader's log only grows during its term, and a later term has a
	// later leader, so (Term, Index) never goes backwards from one report
	// of the group to the next.
	Term, Index uint64
}

// IDs returns the members' server ids.
func (m Membership) IDs() []string {
	out := make([]string, len(m.Members))
	for i, s := range m.Members {
		out[i] = s.ID
	}
	return out
}

// Membership returns the group's latest raft configuration.
func (r *Replica) Membership() (Membership, error) {
	// The term first: if leadership changes in between, the index read
	// after it is still one of the term's or later.
	term := r.raft.CurrentTerm()
	f := r.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return Membership{}, r.adminErr("configuration", err)
	}
	m := Membership{Term: term, Index: r.raft.LastIndex()}
	for _, s := range f.Configuration().Servers {
		m.Members = append(m.Members, Member{Server: Server{ID: string(s.ID), Addr: string(s.Address)}, Voter: s.Suffrage == raft.Voter})
	}
	return m, nil
}

// AddNonvoter adds s to the group as a nonvoter, on the leader; it returns
// once the change is committed. s catches up from the log or a snapshot
// without counting towards commits; AddVoter promotes it later.
func (r *Replica) AddNonvoter(s Server) error {
	f := r.raft.AddNonvoter(raft.ServerID(s.ID), raft.ServerAddress(s.Addr), 0, r.cfg.ElectionTimeout)
	return r.adminErr("add nonvoter", f.Error())
}

// Reconfig says where Reconfigure takes the group.
type Reconfig struct {
	// Want is the group to reach: these servers as voters, no others. The
	// first is the preferred leader: a leader that is not in Want hands
	// leadership to it.
	Want []Server
	// Applied returns the raft index server s has applied, or an error
	// while s runs no replica. A new server is added only once it runs
	// one, and promoted to voter only once it has applied what the
	// leader's log held when the wait began, so that a slow or dead new
	// server never holds up commits.
	Applied func(ctx context.Context, s Server) (uint64, error)
	// Report is told the membership before a server joins the group (as
	// it will be) and after every change (as it is), so that the caller
	// can keep a replica running on every server that is, or may be, a
	// member. A server that leaves is reported gone only once its removal
	// is committed. An error stops Reconfigure.
	Report func(ctx context.Context, m Membership) error
	// PollInterval is how often Applied is asked while a new server
	// catches up. Zero means 50ms.
	PollInterval time.Duration
}

// change is one step from a group's configuration towards the wanted one.
type change int

const (
	changeNone change = iota
	changeAdd
	changePromote
	changeRemove
	changeTransfer
)

// nextChange returns the first change that brings members closer to want,
// on leader self, in the order that keeps quorum safe: new servers join as
// nonvoters, then are promoted one at a time, then servers not wanted
// leave, nonvoters first; the leader leaves last, by handing leadership
// to the first wanted server.
func nextChange(members []Member, want []Server, self string) (change, Server) {
	find := func(id string) (Member, bool) {
		i := slices.IndexFunc(members, func(m Member) bool { return m.ID == id })
		if i < 0 {
			return Member{}, false
		}
		return members[i], true
	}
	wanted := func(id string) bool {
		return slices.ContainsFunc(want, func(s Server) bool { return s.ID == id })
	}
	for _, s := range want {
		if _, ok := find(s.ID); !ok {
			return changeAdd, s
		}
	}
	for _, s := range want {
		if m, _ := find(s.ID); !m.Voter {
			return changePromote, s
		}
	}
	for _, voters := range []bool{false, true} {
		for _, m := range members {
			if m.Voter == voters && m.ID != self && !wanted(m.ID) {
				return changeRemove, m.Server
			}
		}
	}
	if !wanted(self) {
		return changeTransfer, want[0]
	}
	return changeNone, Server{}
}

// Reconfigure brings the group's raft configuration to rc.Want, one
// change at a time, on the leader. New servers join as nonvoters, catch up
// by the log or a snapshot, and become voters only then, so the quorum
// never depends on a server that has not caught up. Servers not wanted
// leave after that; if the leader itself is not wanted, it hands
// leadership to the first wanted server and returns, and the new leader
// finishes. Writes go on throughout.
//
// It returns nil once the configuration is rc.Want and rc.Report has been
// told so; an error matching ErrNotLeader when this replica does not lead
// (any more); ctx's error when ctx ends; or the error of a change or of
// rc.Report. Calling it again after an error picks up where the group is.
func (r *Replica) Reconfigure(ctx context.Context, rc Reconfig) error {
	if err := checkWant(rc.Want); err != nil {
		return fmt.Errorf("partition %s: reconfigure: %w", r.log.ID(), err)
	}
	if rc.Applied == nil || rc.Report == nil {
		return fmt.Errorf("partition %s: reconfigure: Applied and Report are required", r.log.ID())
	}
	if rc.PollInterval <= 0 {
		rc.PollInterval = 50 * time.Millisecond
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !r.IsLeader() {
			return fmt.Errorf("partition %s: reconfigure: %w", r.log.ID(), r.notLeader())
		}
		m, err := r.Membership()
		if err != nil {
			return err
		}
		op, s := nextChange(m.Members, rc.Want, r.cfg.ID)
		switch op {
		case changeNone:
			return rc.Report(ctx, m)
		case changeAdd:
			// Added before its node runs the replica, s would be
			// unreachable and raft would back off from it for seconds.
			if err := r.waitApplied(ctx, rc, s, 0); err != nil {
				return err
			}
			planned := m
			planned.Members = append(slices.Clone(m.Members), Member{Server: s})
			if err := rc.Report(ctx, planned); err != nil {
				return err
			}
			r.logger.Info("adding a replica as nonvoter", "server", s.ID)
			err = r.AddNonvoter(s)
		case changePromote:
			if err := r.waitApplied(ctx, rc, s, r.raft.LastIndex()); err != nil {
				return err
			}
			r.logger.Info("promoting a caught-up replica to voter", "server", s.ID)
			err = r.AddVoter(s)
		case changeRemove:
			r.logger.Info("removing a replica from the group", "server", s.ID)
			err = r.RemoveServer(s.ID)
		case changeTransfer:
			r.logger.Info("handing leadership away before leaving the group", "to", s.ID)
			if err := r.TransferLeadershipTo(s); err != nil {
				return err
			}
			return fmt.Errorf("partition %s: reconfigure: handed leadership to %s: %w", r.log.ID(), s.ID, ErrNotLeader)
		}
		if err != nil {
			return err
		}
		if m, err = r.Membership(); err != nil {
			return err
		}
		if err := rc.Report(ctx, m); err != nil {
			return err
		}
	}
}

// waitApplied waits until s runs a replica that has applied index target.
func (r *Replica) waitApplied(ctx context.Context, rc Reconfig, s Server, target uint64) error {
	t := time.NewTicker(rc.PollInterval)
	defer t.Stop()
	for {
		applied, err := rc.Applied(ctx, s)
		if err == nil && applied >= target {
			return nil
		}
		if err != nil {
			r.logger.Debug("ask a new replica how far it is", "server", s.ID, "err", err)
		}
		if !r.IsLeader() {
			return fmt.Errorf("partition %s: reconfigure: %w", r.log.ID(), r.notLeader())
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("partition %s: waiting for %s to run a replica (%v): %w", r.log.ID(), s.ID, err, ctx.Err())
			}
			return fmt.Errorf("partition %s: waiting for %s to catch up to index %d (at %d): %w", r.log.ID(), s.ID, target, applied, ctx.Err())
		case <-t.C:
		}
	}
}

// checkWant checks a wanted membership: at least one server, each with an
// id and address, no id twice.
func checkWant(want []Server) error {
	if len(want) == 0 {
		return errors.New("no servers wanted; a group needs at least one")
	}
	for i, s := range want {
		if s.ID == "" || s.Addr == "" {
			return fmt.Errorf("server %d of the wanted group has no id or address", i)
		}
		for _, o := range want[:i] {
			if o.ID == s.ID {
				return fmt.Errorf("server %s is wanted twice", s.ID)
			}
		}
	}
	return nil
}
