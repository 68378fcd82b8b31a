package raftmux

import (
	"log/slog"
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
)

// Transport is raft's NetworkTransport whose Close also waits for the
// heartbeat handler calls under way and refuses later ones.
//
// raft runs heartbeats on the transport's connection goroutines, not its
// own, and NetworkTransport.Close does not wait for them. Without this, a
// heartbeat that passed raft's shutdown check could still write a new term
// to the stable store after Raft.Shutdown().Error() returned, and so after
// the caller closed that store: raft panics on the failed write.
type Transport struct {
	*raft.NetworkTransport
	// hbMu is held shared by each heartbeat handler call and exclusively
	// by Close.
	hbMu     sync.RWMutex
	hbClosed bool
}

var _ raft.WithClose = (*Transport)(nil)

// NewTransport returns raft's network transport over layer, normally a
// Layer, keeping up to 3 idle connections per peer, with a 10 s I/O
// timeout, and logging to logger through NewLogger (nil means
// slog.Default). Give the logger the group, as logger.With("group", g), to
// tell groups apart. Closing the transport, as Raft.Shutdown().Error()
// does, closes layer.
func NewTransport(layer raft.StreamLayer, logger *slog.Logger) *Transport {
	return &Transport{NetworkTransport: raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  layer,
		MaxPool: transportMaxPool,
		Timeout: transportTimeout,
		Logger:  NewLogger(logger).Named("raft-net"),
	})}
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

// Close waits for the heartbeat handler calls under way, then closes the
// NetworkTransport.
func (t *Transport) Close() error {
	t.hbMu.Lock()
	t.hbClosed = true
	t.hbMu.Unlock()
	return t.NetworkTransport.Close()
}
