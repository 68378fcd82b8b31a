package raftmux

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

var _ raft.StreamLayer = (*Layer)(nil)

// Layer is the raft.StreamLayer of one raft group on a Mux: Accept returns
// the connections peers dialed for the group, Dial opens connections to the
// group on other nodes. Make one with Mux.Layer.
type Layer struct {
	m     *Mux
	group string
	hello []byte // magic and header, written by Dial
	ch    chan net.Conn

	closeOnce sync.Once
	closed    chan struct{}

	mu    sync.Mutex
	conns map[*layerConn]struct{} // accepted or dialed, not yet closed; nil once closed
}

func newLayer(m *Mux, group string) *Layer {
	return &Layer{
		m:      m,
		group:  group,
		hello:  appendHeader(nil, group),
		ch:     make(chan net.Conn),
		closed: make(chan struct{}),
		conns:  make(map[*layerConn]struct{}),
	}
}

// Accept waits for a connection a peer dialed for the group. It returns an
// error matching net.ErrClosed after Close, and the listener's error if the
// Mux's listener stopped.
func (l *Layer) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return l.track(c, true)
	case <-l.closed:
		return nil, net.ErrClosed
	case <-l.m.a.done:
		return nil, l.m.a.err
	}
}

// Dial connects to the node at address, a HOST:PORT served by a Splitter
// and a Mux, and writes the header naming the group. timeout bounds the
// connect and the write; 0 means none.
func (l *Layer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	select {
	case <-l.closed:
		return nil, net.ErrClosed
	default:
	}
	c, err := net.DialTimeout("tcp", string(address), timeout)
	if err != nil {
		return nil, err
	}
	if timeout > 0 {
		err = c.SetWriteDeadline(time.Now().Add(timeout))
	}
	if err == nil {
		_, err = c.Write(l.hello)
	}
	if err == nil {
		err = c.SetWriteDeadline(time.Time{})
	}
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("raftmux: group %q: write header to %s: %w", l.group, address, err)
	}
	return l.track(c, false)
}

// Addr returns the address the Mux advertises, the node's one address.
func (l *Layer) Addr() net.Addr { return l.m.addr }

// Close unregisters the group from the Mux, so that connections for it are
// refused from then on, and makes Accept and Dial fail. It closes the
// connections the Layer dialed and ends reading on those it accepted: their
// readers see io.EOF, the quiet end raft's transport expects, and close
// them. It never closes the Mux's listener. raft's NetworkTransport.Close,
// hence Raft.Shutdown().Error(), calls it.
func (l *Layer) Close() error {
	l.closeOnce.Do(func() {
		close(l.closed)
		l.m.unregister(l)
		l.mu.Lock()
		conns := l.conns
		l.conns = nil
		l.mu.Unlock()
		for c := range conns {
			c.end()
		}
	})
	return nil
}

// deliver hands c to Accept, or closes it if l or the Mux closes first.
func (l *Layer) deliver(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.closed:
		_ = c.Close()
	case <-l.m.a.done:
		_ = c.Close()
	}
}

// track records c so that Close can end it, or closes it if l is closed.
func (l *Layer) track(c net.Conn, accepted bool) (net.Conn, error) {
	lc := &layerConn{Conn: c, l: l, accepted: accepted}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns == nil {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	l.conns[lc] = struct{}{}
	return lc, nil
}

// layerConn is a connection of a Layer; closing it forgets it.
type layerConn struct {
	net.Conn
	l        *Layer
	accepted bool
}

func (c *layerConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// end stops c for Layer.Close. An accepted connection has a reader in
// raft's transport that logs any error other than io.EOF, so it gets a
// read shutdown, which its reader sees as io.EOF before it closes c.
func (c *layerConn) end() {
	if cr, ok := c.Conn.(interface{ CloseRead() error }); ok && c.accepted {
		if cr.CloseRead() == nil {
			return
		}
	}
	_ = c.Conn.Close()
}
