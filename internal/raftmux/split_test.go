package raftmux

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"testing"
	"time"
)

// splitListener listens on 127.0.0.1, splits the listener with the given
// prefix timeout and serves gRPC's health service on Apps.
func splitListener(t *testing.T, timeout time.Duration) (*Splitter, string) {
	t.Helper()
	l := listen(t)
	sp := split(l, testLogger(t, slog.LevelDebug), timeout)
	t.Cleanup(func() {
		if err := sp.Close(); err != nil {
			t.Errorf("Splitter.Close: %v", err)
		}
	})
	serveHealth(t, sp.Apps())
	return sp, l.Addr().String()
}

func TestSplitServesGRPCAndRaftOnOnePort(t *testing.T) {
	sp, addr := splitListener(t, prefixTimeout)

	// Clients that connect first and send nothing, or only part of the
	// magic, hold up nobody.
	dial(t, addr)
	partial := dial(t, addr)
	if _, err := partial.Write([]byte(magic[:3])); err != nil {
		t.Fatal(err)
	}

	checkHealth(t, addr)

	c := dial(t, addr)
	if _, err := c.Write([]byte(magic + "ping")); err != nil {
		t.Fatal(err)
	}
	rc := accept(t, sp.Raft())
	var got [4]byte
	if _, err := io.ReadFull(rc, got[:]); err != nil {
		t.Fatal(err)
	}
	if string(got[:]) != "ping" {
		t.Fatalf("raft listener read %q, want %q: the magic must be consumed", got, "ping")
	}

	checkHealth(t, addr) // and still, with a raft connection open
}

func TestSplitReplaysWhatItRead(t *testing.T) {
	for _, peekable := range []bool{true, false} {
		for _, sent := range []string{
			"G",
			"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
			"RNLRXYZ, a near miss",
			"RNLRAFT\x02, another version",
		} {
			t.Run(fmt.Sprintf("peekable=%v/%.8q", peekable, sent), func(t *testing.T) {
				var l net.Listener = listen(t)
				addr := l.Addr().String()
				if !peekable {
					l = noPeekListener{l}
				}
				sp := Split(l, testLogger(t, slog.LevelDebug))
				t.Cleanup(func() { sp.Close() })
				c := dial(t, addr)
				if _, err := c.Write([]byte(sent)); err != nil {
					t.Fatal(err)
				}
				if err := c.(*net.TCPConn).CloseWrite(); err != nil {
					t.Fatal(err)
				}
				ac := accept(t, sp.Apps())
				// Where Split could peek, it read nothing and the app gets
				// the connection as it is.
				if _, raw := ac.(*net.TCPConn); raw != (peekable && runtime.GOOS == "linux") {
					t.Errorf("apps listener returned a %T", ac)
				}
				if got := readAll(t, ac); got != sent {
					t.Fatalf("apps listener read %q, want %q", got, sent)
				}
			})
		}
	}
}

// noPeekListener hides the sockets it accepts, so Split cannot peek at
// them and reads instead.
type noPeekListener struct{ net.Listener }

func (l noPeekListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return struct{ net.Conn }{c}, nil
}

func TestSplitClosesConnectionsWithoutPrefix(t *testing.T) {
	_, addr := splitListener(t, 50*time.Millisecond)

	// One sends nothing and times out; one sends part of the magic and
	// ends; one sends part of the magic and times out.
	silent := dial(t, addr)
	ended := dial(t, addr)
	if _, err := ended.Write([]byte(magic[:5])); err != nil {
		t.Fatal(err)
	}
	if err := ended.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	slow := dial(t, addr)
	if _, err := slow.Write([]byte(magic[:7])); err != nil {
		t.Fatal(err)
	}
	for _, c := range []net.Conn{silent, ended, slow} {
		if got := readAll(t, c); got != "" {
			t.Fatalf("read %q from the splitter", got)
		}
	}

	checkHealth(t, addr)
}

func TestSplitCloseOneSide(t *testing.T) {
	sp, addr := splitListener(t, prefixTimeout)
	if err := sp.Raft().Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Raft().Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Raft().Accept after its Close: %v, want net.ErrClosed", err)
	}

	// Raft connections are closed now; gRPC is served as before.
	c := dial(t, addr)
	if _, err := c.Write([]byte(magic + "ping")); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, c); got != "" {
		t.Fatalf("read %q from the splitter", got)
	}
	checkHealth(t, addr)
}

func TestSplitClose(t *testing.T) {
	l := listen(t)
	sp := Split(l, testLogger(t, slog.LevelDebug))
	// A connection still being read is closed by Close, well before its
	// deadline.
	c := dial(t, l.Addr().String())
	done := make(chan error, 1)
	go func() {
		_, err := sp.Apps().Accept()
		done <- err
	}()
	if err := sp.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Apps().Accept during Close: %v, want net.ErrClosed", err)
	}
	if _, err := sp.Raft().Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Raft().Accept after Close: %v, want net.ErrClosed", err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("parent Accept after Close: %v, want net.ErrClosed", err)
	}
	if got := readAll(t, c); got != "" {
		t.Fatalf("read %q from the splitter", got)
	}
	if err := sp.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestSplitParentClosed(t *testing.T) {
	l := listen(t)
	sp := Split(l, testLogger(t, slog.LevelDebug))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, side := range []net.Listener{sp.Apps(), sp.Raft()} {
		if _, err := side.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after the parent closed: %v, want net.ErrClosed", err)
		}
	}
	if err := sp.Close(); err != nil {
		t.Fatalf("Close after the parent closed: %v", err)
	}
}
