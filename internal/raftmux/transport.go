package raftmux

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

const (
	// transportMaxPool is how many idle connections a transport keeps per
	// peer.
	transportMaxPool = 3
	// transportTimeout bounds a dial and each RPC's I/O; raft scales it up
	// for snapshots.
	transportTimeout = 10 * time.Second
	// refusedHold is how long AppendEntries keeps trying a peer that
	// refuses connections before it reports the failure, and refusedRetry
	// how often it tries.
	refusedHold  = time.Second
	refusedRetry = 50 * time.Millisecond
)

// Transport is raft's NetworkTransport whose Close also waits for the
// heartbeat handler calls under way and refuses later ones.
//
// raft runs heartbeats on the transport's connection goroutines, not its
// own, and NetworkTransport.Close does not wait for them. Without this, a
// heartbeat that passed raft's shutdown check could still write a new term
// to the stable store after Raft.Shutdown().Error() returned, and so after
// the caller closed that store: raft panics on the failed write.
//
// Its AppendEntries also holds a call to a peer that refuses connections
// for up to a second, trying again, before it fails; see AppendEntries.
type Transport struct {
	*raft.NetworkTransport
	// hbMu is held shared by each heartbeat handler call and exclusively
	// by Close.
	hbMu     sync.RWMutex
	hbClosed bool

	closing   chan struct{} // closed by Close
	closeOnce sync.Once
	hold      time.Duration // refusedHold; tests change it
	onRefused func()        // called before each wait for a refusing peer; tests set it
}

var _ raft.WithClose = (*Transport)(nil)

// NewTransport returns raft's network transport over layer, normally a
// Layer, keeping up to 3 idle connections per peer, with a 10 s I/O
// timeout, and logging to logger through NewLogger (nil means
// slog.Default). Give the logger the group, as logger.With("group", g), to
// tell groups apart. Closing the transport, as Raft.Shutdown().Error()
// does, closes layer.
func NewTransport(layer raft.StreamLayer, logger *slog.Logger) *Transport {
	return &Transport{
		NetworkTransport: raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream:  layer,
			MaxPool: transportMaxPool,
			Timeout: transportTimeout,
			Logger:  NewLogger(logger).Named("raft-net"),
		}),
		closing: make(chan struct{}),
		hold:    refusedHold,
	}
}

// AppendEntries sends an AppendEntries RPC to target. When target refuses
// the connection (nothing listens there: the node is down), the call tries
// again every 50 ms, for up to a second, before it fails.
//
// raft backs off from a follower by the number of calls to it that failed,
// not by how long it has been failing: before each try it waits
// 10 ms × 2^(failures−2), up to 10.24 s, and only a success resets the
// count. A stopped node refuses connections at once, so for a node down
// for 15 s the count reaches 12 and the next try comes 20.5 s after it went
// down: 5.5 s after its return. With each failed call taking a second, the
// count grows about once a second instead; the tries around 15 s are 2.6 s
// apart, and the held try sees the node back within 50 ms.
func (t *Transport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	err := t.NetworkTransport.AppendEntries(id, target, args, resp)
	if !refused(err) {
		return err
	}
	hold := time.NewTimer(t.hold)
	defer hold.Stop()
	retry := time.NewTicker(refusedRetry)
	defer retry.Stop()
	for {
		if t.onRefused != nil {
			t.onRefused()
		}
		select {
		case <-hold.C:
			return err
		case <-t.closing:
			return err
		case <-retry.C:
		}
		err = t.NetworkTransport.AppendEntries(id, target, args, resp)
		if !refused(err) {
			return err
		}
	}
}

// refused reports whether err is a failure to connect, so that nothing of
// the RPC was sent.
func refused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// SetHeartbeatHandler sets raft's fast path for heartbeats, as on
// NetworkTransport; after Close, heartbeats are answered with
// raft.ErrTransportShutdown without calling cb.
func (t *Transport) SetHeartbeatHandler(cb func(rpc raft.RPC)) {
	if cb == nil {
		t.NetworkTransport.SetHeartbeatHandler(nil)
		return
	}
	t.NetworkTransport.SetHeartbeatHandler(func(rpc raft.RPC) {
		t.hbMu.RLock()
		defer t.hbMu.RUnlock()
		if t.hbClosed {
			rpc.Respond(nil, raft.ErrTransportShutdown)
			return
		}
		cb(rpc)
	})
}

// Close ends the waits of AppendEntries calls for refusing peers, waits for
// the heartbeat handler calls under way, then closes the NetworkTransport.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() { close(t.closing) })
	t.hbMu.Lock()
	t.hbClosed = true
	t.hbMu.Unlock()
	return t.NetworkTransport.Close()
}
