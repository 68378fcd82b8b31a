package raftmux

import (
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Mux hands the raft connections of one listener to the Layer of the group
// each names in its header. Make one with New.
type Mux struct {
	a       *acceptor
	addr    net.Addr
	timeout time.Duration

	mu     sync.Mutex
	layers map[string]*Layer
	closed bool
}

// New starts reading the group header of every connection l accepts, l
// normally being a Splitter's Raft listener, and handing each connection to
// its group's Layer. A connection for a group with no Layer is closed and
// logged at debug level; raft on the dialing node retries, so a group that
// registers a little after its peers start dialing loses nothing.
//
// advertise is the HOST:PORT peers dial to reach this node, the same address
// as its gRPC API; empty means l.Addr(). New fails with an error matching
// ErrAdvertise if the address has an unspecified host (such as 0.0.0.0) or
// port 0, leaving l open. A nil logger means slog.Default.
//
// The Mux owns l from then on: its Close closes l.
func New(l net.Listener, advertise string, logger *slog.Logger) (*Mux, error) {
	return newMux(l, advertise, logger, prefixTimeout)
}

func newMux(l net.Listener, advertise string, logger *slog.Logger, timeout time.Duration) (*Mux, error) {
	if advertise == "" {
		advertise = l.Addr().String()
	}
	if err := checkAdvertise(advertise); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	m := &Mux{
		addr:    tcpAddr(advertise),
		timeout: timeout,
		layers:  make(map[string]*Layer),
	}
	m.a = newAcceptor(l, logger, m.route)
	m.a.start()
	return m, nil
}

// checkAdvertise reports whether peers can dial addr.
func checkAdvertise(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrAdvertise, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("%w: %q has no specific host", ErrAdvertise, addr)
	}
	if port == "" || port == "0" {
		return fmt.Errorf("%w: %q has no port", ErrAdvertise, addr)
	}
	return nil
}

// Layer registers group and returns its stream layer, for NewTransport. Its
// Addr is the Mux's advertised address. It fails with ErrGroupRegistered if
// group already has an open Layer on m (once that Layer is closed the group
// may register again), with an error matching ErrGroupName for a name that
// is empty or longer than 1024 bytes, and with net.ErrClosed after Close.
func (m *Mux) Layer(group string) (*Layer, error) {
	if err := checkGroup(group); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, net.ErrClosed
	}
	if _, ok := m.layers[group]; ok {
		return nil, fmt.Errorf("group %q: %w", group, ErrGroupRegistered)
	}
	l := newLayer(m, group)
	m.layers[group] = l
	return l, nil
}

// Close closes every Layer, then the listener and the connections whose
// header is still being read, and waits for the Mux's goroutines. It
// returns the listener's Close error.
func (m *Mux) Close() error {
	m.mu.Lock()
	m.closed = true
	layers := make([]*Layer, 0, len(m.layers))
	for _, l := range m.layers {
		layers = append(layers, l)
	}
	m.mu.Unlock()
	for _, l := range layers {
		_ = l.Close()
	}
	return m.a.close()
}

// route reads c's header and hands c to the Layer of the group it names.
func (m *Mux) route(c net.Conn) {
	var group string
	err := c.SetReadDeadline(time.Now().Add(m.timeout))
	if err == nil {
		group, err = readGroup(c)
	}
	if err == nil {
		err = c.SetReadDeadline(time.Time{})
	}
	if err != nil {
		m.a.reject(c, "raftmux: closing raft connection with no valid header", "error", err)
		return
	}
	m.mu.Lock()
	l := m.layers[group]
	m.mu.Unlock()
	if l == nil {
		m.a.reject(c, "raftmux: closing raft connection for a group with no layer", "group", group)
		return
	}
	if m.a.release(c) {
		l.deliver(c)
	}
}

// unregister removes l from m if it is the Layer registered for its group.
func (m *Mux) unregister(l *Layer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.layers[l.group] == l {
		delete(m.layers, l.group)
	}
}

// tcpAddr is an advertised TCP address, kept as given so that a host name
// is not resolved.
type tcpAddr string

func (a tcpAddr) Network() string { return "tcp" }
func (a tcpAddr) String() string  { return string(a) }
