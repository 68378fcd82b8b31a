package partition

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/runnel-dev/runnel/log"
)

// peerLogEndTimeout bounds the question a leader asks a follower before
// sending it a snapshot.
const peerLogEndTimeout = 5 * time.Second

// peerLogEndTries is how many snapshot sends in a row to one follower fail
// because it did not say where its log ends (it is down, or its replica
// not open yet) before the next is sent whole anyway.
const peerLogEndTries = 3

// snapshotTransport is a replica's raft transport when ReplicaConfig's
// PeerLogEnd is set: before raft sends a follower a snapshot streamed from
// the log, it asks the follower where its log ends and sends only the
// batches after that (logStream.continueFrom).
type snapshotTransport struct {
	raft.Transport
	log        *log.Log
	peerLogEnd func(context.Context, Server) (int64, error)
	logger     *slog.Logger

	mu       sync.Mutex
	failures map[raft.ServerID]int // sends in a row that failed asking
}

var _ raft.WithClose = (*snapshotTransport)(nil)

func (t *snapshotTransport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest,
	resp *raft.InstallSnapshotResponse, data io.Reader) error {
	if s, ok := data.(*logStream); ok {
		if err := t.trim(Server{ID: string(id), Addr: string(target)}, args, s); err != nil {
			return err
		}
	}
	return t.Transport.InstallSnapshot(id, target, args, resp, data)
}

// trim makes s a partial snapshot for follower f when f's log holds some
// of its batches, and sets args.Size to match. If f does not say where its
// log ends, trim fails, and raft tries again later, when f may be up;
// after peerLogEndTries failures in a row it lets s go whole.
func (t *snapshotTransport) trim(f Server, args *raft.InstallSnapshotRequest, s *logStream) error {
	ctx, cancel := context.WithTimeout(context.Background(), peerLogEndTimeout)
	end, err := t.peerLogEnd(ctx, f)
	cancel()
	id := raft.ServerID(f.ID)
	t.mu.Lock()
	if t.failures == nil {
		t.failures = map[raft.ServerID]int{}
	}
	if err == nil || errors.Is(err, ErrNoLogEnd) {
		delete(t.failures, id)
	} else {
		t.failures[id]++
	}
	tries := t.failures[id]
	if tries >= peerLogEndTries {
		delete(t.failures, id)
	}
	t.mu.Unlock()
	if err != nil {
		if tries > 0 && tries < peerLogEndTries {
			return fmt.Errorf("snapshot for %s not sent: it did not say where its log ends: %w", f.ID, err)
		}
		t.logger.Info("snapshot sent whole: the follower did not say where its log ends", "log", t.log.ID(), "follower", f.ID, "tries", tries, "err", err)
		return nil
	}
	full := args.Size
	n, ok := s.continueFrom(end)
	if !ok {
		t.logger.Info("snapshot sent whole", "log", t.log.ID(), "follower", f.ID, "follower_end", end, "start", s.hdr.start, "end", s.hdr.end)
		return nil
	}
	args.Size = n
	t.logger.Info("snapshot sent from the follower's log end", "log", t.log.ID(), "follower", f.ID, "from", end, "to", s.hdr.end, "bytes", n, "whole_bytes", full)
	return nil
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
