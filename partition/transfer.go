package partition

import (
	"time"

	"github.com/hashicorp/raft"
)

// TransferLeadershipTo hands leadership to s, which must be a voter of the
// group. It returns once s leads or the transfer failed.
func (r *Replica) TransferLeadershipTo(s Server) error {
	return r.transfer("transfer leadership", func() raft.Future {
		return r.raft.LeadershipTransferToServer(raft.ServerID(s.ID), raft.ServerAddress(s.Addr))
	})
}

// transfer runs the leadership transfer start begins, with Append turned
// away until it ends.
//
// raft refuses every proposal it dequeues while a transfer is in progress,
// with an error only the proposal's future carries, and waiters do not
// read futures. raft marks the transfer in progress from when it takes the
// request until a while after it answers a failed one, so Append makes no
// proposal from the request until an entry proposed after the answer has
// applied: that entry ends the wait of any proposal refused before it (see
// waiters), as ErrOutcomeUnknown. If the transfer succeeds, this replica is
// a follower and watch ends them all.
func (r *Replica) transfer(op string, start func() raft.Future) error {
	r.propMu.Lock()
	r.transferring++
	f := start()
	r.propMu.Unlock()
	err := f.Error()
	if err != nil {
		r.settleProposals()
	}
	r.propMu.Lock()
	r.transferring--
	r.propMu.Unlock()
	return r.adminErr(op, err)
}

// settleProposals proposes empty entries until one applies, this replica
// stops leading, or it closes. An entry raft refuses is never answered, so
// after a heartbeat timeout without an answer it proposes another.
func (r *Replica) settleProposals() {
	for {
		// Proposed while the transfer is still counted: that is the point.
		w, err := r.propose([]byte{entryNoop}, true)
		if err != nil {
			return // not the leader
		}
		t := time.NewTimer(r.cfg.HeartbeatTimeout)
		select {
		case <-w.done:
			// Applied, or ended by a lost leadership or Close, which
			// end every proposal before it too.
			t.Stop()
			return
		case <-r.stop:
			t.Stop()
			return
		case <-t.C:
		}
	}
}
