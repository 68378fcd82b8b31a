package raftmux

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"syscall"
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
// for up to a second, trying again, before it fails; see AppendEntries. Its
// pipelines never leave a send waiting on raft; see AppendEntriesPipeline.
type Transport struct {
	*raft.NetworkTransport
	// hbMu is held shared by each heartbeat handler call and exclusively
	// by Close.
	hbMu     sync.RWMutex
	hbClosed bool

	closing   chan struct{} // closed by Interrupt (and so by Close)
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

// refused reports whether err is a refused connection: nothing listens at
// the address, as when the node is down, and nothing of the RPC was sent. A
// dial that times out (an unreachable host) is not held: each try could
// take the whole dial timeout.
func refused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" && errors.Is(err, syscall.ECONNREFUSED)
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

// Interrupt ends the waits of AppendEntries calls for refusing peers under
// way, and later calls to a refusing peer fail at once. Call it before
// Raft.Shutdown: raft waits for its replicators before it closes the
// transport, so a wait under way would otherwise hold the shutdown for up to
// a second.
func (t *Transport) Interrupt() {
	t.closeOnce.Do(func() { close(t.closing) })
}

// Close interrupts the waits of AppendEntries calls for refusing peers,
// waits for the heartbeat handler calls under way, then closes the
// NetworkTransport.
func (t *Transport) Close() error {
	t.Interrupt()
	t.hbMu.Lock()
	t.hbClosed = true
	t.hbMu.Unlock()
	return t.NetworkTransport.Close()
}

// AppendEntriesPipeline opens raft's pipeline of AppendEntries RPCs to
// target, with its answers handed on through a queue that never fills.
//
// raft's own pipeline hands each decoded answer to raft over a channel
// without a buffer, and its sends wait for the decoder. raft stops reading
// answers for good once a follower answers Success=false or with a newer
// term, but may still send once more before it notices: that send then
// waits on the decoder, the decoder on raft, and replication to that
// follower stops, and Raft.Shutdown hangs waiting for it (hashicorp/raft
// issue 612). Here a goroutine takes each answer from the decoder as soon
// as it is decoded, so a send waits only for the network.
func (t *Transport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	q := &pipeline{
		AppendPipeline: p,
		done:           make(chan raft.AppendFuture),
		closed:         make(chan struct{}),
	}
	go q.forward()
	return q, nil
}

// pipeline is raft's AppendPipeline whose answers pass through forward.
type pipeline struct {
	raft.AppendPipeline
	done      chan raft.AppendFuture // what Consumer returns
	closed    chan struct{}          // closed by Close; ends forward
	closeOnce sync.Once
}

// forward moves each answer from the wrapped pipeline to done, keeping in
// order those raft has not taken yet. The queue holds only answers sent
// while raft is not reading, and raft stops sending soon after it stops
// reading, so it stays short.
func (p *pipeline) forward() {
	in := p.AppendPipeline.Consumer()
	var queue []raft.AppendFuture
	for {
		var out chan raft.AppendFuture
		var next raft.AppendFuture
		if len(queue) > 0 {
			out, next = p.done, queue[0]
		}
		select {
		case f := <-in:
			queue = append(queue, f)
		case out <- next:
			queue[0] = nil
			queue = queue[1:]
		case <-p.closed:
			return
		}
	}
}

// Consumer returns the answers, in the order of the sends.
func (p *pipeline) Consumer() <-chan raft.AppendFuture { return p.done }

// Close closes the wrapped pipeline and ends the forwarding.
func (p *pipeline) Close() error {
	p.closeOnce.Do(func() { close(p.closed) })
	return p.AppendPipeline.Close()
}
