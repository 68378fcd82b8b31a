package raftmux

import (
	"log/slog"
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

// NewTransport returns raft's network transport over layer, normally a
// Layer, keeping up to 3 idle connections per peer, with a 10 s I/O
// timeout, and logging to logger through NewLogger (nil means
// slog.Default). Give the logger the group, as logger.With("group", g), to
// tell groups apart. Closing the transport, as Raft.Shutdown().Error()
// does, closes layer.
func NewTransport(layer raft.StreamLayer, logger *slog.Logger) *raft.NetworkTransport {
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  layer,
		MaxPool: transportMaxPool,
		Timeout: transportTimeout,
		Logger:  NewLogger(logger).Named("raft-net"),
	})
}
