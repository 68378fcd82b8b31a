package partition

import (
	"github.com/hashicorp/raft"
)

// TransferLeadershipTo hands leadership to s, which must be a voter of the
// group. It returns once s leads or the transfer failed.
func (r *Replica) TransferLeadershipTo(s Server) error {
	return r.adminErr("transfer leadership", r.raft.LeadershipTransferToServer(raft.ServerID(s.ID), raft.ServerAddress(s.Addr)).Error())
}
