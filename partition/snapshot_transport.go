package partition

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/hashicorp/raft"
	"github.com/runnel-dev/runnel/log"
)

// peerLogEndTimeout bounds the question a leader asks a follower before
// sending it a snapshot; past it, the snapshot carries the whole partition.
const peerLogEndTimeout = 5 * time.Second

// snapshotTransport is a replica's raft transport when ReplicaConfig's
// PeerLogEnd is set: before raft sends a follower a snapshot streamed from
// the log, it asks the follower where its log ends and sends only the
// batches after that (logStream.continueFrom).
type snapshotTransport struct {
	raft.Transport
	log        *log.Log
	peerLogEnd func(context.Context, Server) (int64, error)
	logger     *slog.Logger
}

var _ raft.WithClose = (*snapshotTransport)(nil)

func (t *snapshotTransport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest,
	resp *raft.InstallSnapshotResponse, data io.Reader) error {
	if s, ok := data.(*logStream); ok {
		t.trim(Server{ID: string(id), Addr: string(target)}, args, s)
	}
	return t.Transport.InstallSnapshot(id, target, args, resp, data)
}

// trim makes s a partial snapshot for follower f when f's log holds some
// of its batches, and sets args.Size to match.
func (t *snapshotTransport) trim(f Server, args *raft.InstallSnapshotRequest, s *logStream) {
	ctx, cancel := context.WithTimeout(context.Background(), peerLogEndTimeout)
	end, err := t.peerLogEnd(ctx, f)
	cancel()
	if err != nil {
		t.logger.Info("snapshot sent whole: the follower did not say where its log ends", "log", t.log.ID(), "follower", f.ID, "err", err)
		return
	}
	full := args.Size
	n, ok := s.continueFrom(end)
	if !ok {
		t.logger.Info("snapshot sent whole", "log", t.log.ID(), "follower", f.ID, "follower_end", end, "start", s.hdr.start, "end", s.hdr.end)
		return
	}
	args.Size = n
	t.logger.Info("snapshot sent from the follower's log end", "log", t.log.ID(), "follower", f.ID, "from", end, "to", s.hdr.end, "bytes", n, "whole_bytes", full)
}

// Close closes the transport underneath if it can be closed.
func (t *snapshotTransport) Close() error {
	if c, ok := t.Transport.(raft.WithClose); ok {
		return c.Close()
	}
	return nil
}

// preVoteSnapshotTransport is a snapshotTransport over a transport that
// supports raft's pre-vote, which raft detects by this method.
type preVoteSnapshotTransport struct{ *snapshotTransport }

var _ raft.WithPreVote = preVoteSnapshotTransport{}

func (t preVoteSnapshotTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest,
	resp *raft.RequestPreVoteResponse) error {
	return t.Transport.(raft.WithPreVote).RequestPreVote(id, target, args, resp)
}
