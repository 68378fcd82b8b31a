package raftmux

import (
	"log/slog"
	"net"
	"sync"
	"time"
)

// Splitter divides the connections of one listener between two: those that
// open with the raft magic go to Raft, with the magic consumed, and all
// others to Apps, untouched. Make one with Split.
type Splitter struct {
	a    *acceptor
	apps *subListener
	raft *subListener

	timeout time.Duration
}

// Split starts dividing l's connections between the Splitter's Apps and Raft
// listeners. Each new connection is read, in its own goroutine and for at
// most 5 s, until its first bytes match the magic or cannot; one that sends
// too little in time is closed and logged at debug level. A nil logger means
// slog.Default.
//
// The Splitter owns l: its Close closes l. Closing l directly also makes both
// listeners' Accept fail, but only Close waits for the goroutines.
func Split(l net.Listener, logger *slog.Logger) *Splitter {
	return split(l, logger, prefixTimeout)
}

func split(l net.Listener, logger *slog.Logger, timeout time.Duration) *Splitter {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Splitter{timeout: timeout}
	s.apps = newSubListener(s, l.Addr())
	s.raft = newSubListener(s, l.Addr())
	s.a = newAcceptor(l, logger, s.sniff)
	s.a.start()
	return s
}

// Apps returns the listener of connections that do not open with the raft
// magic, for grpc.Server.Serve. Its Close stops only it: connections for it
// are closed from then on. Its Accept returns an error matching
// net.ErrClosed once it or the Splitter is closed, or the error that
// stopped the parent listener.
func (s *Splitter) Apps() net.Listener { return s.apps }

// Raft returns the listener of connections that opened with the raft
// magic, the magic consumed, for New. It behaves as Apps does.
func (s *Splitter) Raft() net.Listener { return s.raft }

// Close closes the parent listener, both listeners and the connections not
// yet handed to either, and waits for the Splitter's goroutines. Connections
// already accepted from Apps or Raft are their acceptors' to close.
func (s *Splitter) Close() error {
	return s.a.close()
}

// sniff reads from c until its first bytes are the magic or cannot be, and
// hands it to the listener they name.
func (s *Splitter) sniff(c net.Conn) {
	var buf [len(magic)]byte
	err := c.SetReadDeadline(time.Now().Add(s.timeout))

	// Peek first, where the platform can: the first bytes of a client that
	// is not raft almost always show it, and the app then gets the
	// connection as it is. (gRPC, for one, sets TCP_USER_TIMEOUT only on a
	// *net.TCPConn.)
	var n int
	if err == nil {
		n, err = peek(c, buf[:])
	}
	if err == nil && string(buf[:n]) != magic[:n] {
		s.hand(c, s.apps, c)
		return
	}

	n = 0
	for err == nil && n < len(buf) && string(buf[:n]) == magic[:n] {
		var m int
		m, err = c.Read(buf[n:])
		n += m
	}
	switch {
	case string(buf[:n]) != magic[:n]:
		// Not raft; an error the read met along the way is the app's.
		s.hand(c, s.apps, &replayConn{Conn: c, head: buf[:n]})
	case err != nil:
		s.a.reject(c, "raftmux: closing connection that sent no complete prefix", "read", n, "error", err)
	default:
		s.hand(c, s.raft, c)
	}
}

// hand clears c's read deadline and hands conn, c or a wrapper of it, to
// the listener to.
func (s *Splitter) hand(c net.Conn, to *subListener, conn net.Conn) {
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		s.a.reject(c, "raftmux: closing connection", "error", err)
		return
	}
	if s.a.release(c) {
		to.deliver(conn)
	}
}

// replayConn returns head before reading on from Conn.
type replayConn struct {
	net.Conn
	head []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.head) == 0 {
		return c.Conn.Read(p)
	}
	n := copy(p, c.head)
	c.head = c.head[n:]
	return n, nil
}

// subListener is one side of a Splitter.
type subListener struct {
	s     *Splitter
	addr  net.Addr
	conns chan net.Conn

	closeOnce sync.Once
	closed    chan struct{}
}

func newSubListener(s *Splitter, addr net.Addr) *subListener {
	return &subListener{s: s, addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

// deliver hands c to Accept, or closes it if l or the Splitter closes
// first.
func (l *subListener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.closed:
		_ = c.Close()
	case <-l.s.a.done:
		_ = c.Close()
	}
}

func (l *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-l.s.a.done:
		return nil, l.s.a.err
	}
}

func (l *subListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *subListener) Addr() net.Addr { return l.addr }
