package raftmux

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// testMux listens on 127.0.0.1 and returns a Splitter's Raft listener under
// a Mux, with gRPC's health service on Apps, and the node's address.
func testMux(t *testing.T) (*Mux, string) {
	t.Helper()
	l := listen(t)
	return muxOn(t, l), l.Addr().String()
}

// muxOn serves a Mux, and health checks beside it, on l until the test
// ends.
func muxOn(t *testing.T, l net.Listener) *Mux {
	t.Helper()
	logger := testLogger(t, slog.LevelDebug)
	sp := Split(l, logger)
	t.Cleanup(func() { sp.Close() })
	serveHealth(t, sp.Apps())
	m, err := New(sp.Raft(), "", logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Mux.Close: %v", err)
		}
	})
	return m
}

func layer(t *testing.T, m *Mux, group string) *Layer {
	t.Helper()
	l, err := m.Layer(group)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLayerCarriesBytesBothWays(t *testing.T) {
	m1, _ := testMux(t)
	m2, addr2 := testMux(t)
	l1, l2 := layer(t, m1, "x"), layer(t, m2, "x")
	layer(t, m2, "y") // a second group on the same Mux takes nothing

	d, err := l1.Dial(raft.ServerAddress(addr2), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	a := accept(t, l2)
	var got [4]byte
	if _, err := io.ReadFull(a, got[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(d, got[:]); err != nil {
		t.Fatal(err)
	}
	if string(got[:]) != "pong" {
		t.Fatalf("dialer read %q, want pong", got)
	}
	if l1.Addr().String() != m1.addr.String() || l1.Addr().Network() != "tcp" {
		t.Fatalf("Layer.Addr = %v, want the Mux's %v", l1.Addr(), m1.addr)
	}
	checkHealth(t, addr2)
}

func TestLayerClose(t *testing.T) {
	m1, _ := testMux(t)
	m2, addr2 := testMux(t)
	l1, l2 := layer(t, m1, "x"), layer(t, m2, "x")
	d, err := l1.Dial(raft.ServerAddress(addr2), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	a := accept(t, l2)

	// Closing the accepting layer ends reading on its connection, the
	// reader closes it, and the dialer sees the end.
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := a.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("Read on an accepted connection after Layer.Close: %d, %v; want 0, io.EOF", n, err)
	}
	a.Close()
	if got := readAll(t, d); got != "" {
		t.Fatalf("dialer read %q", got)
	}
	if _, err := l2.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
	if _, err := l2.Dial(raft.ServerAddress(addr2), time.Second); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Dial after Close: %v, want net.ErrClosed", err)
	}

	// The group is refused now, and may register again.
	d2, err := l1.Dial(raft.ServerAddress(addr2), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, d2); got != "" {
		t.Fatalf("read %q on a connection for a closed group", got)
	}
	d2.Close()
	layer(t, m2, "x")

	// Closing the dialing layer closes its connections.
	if err := l1.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read on a dialed connection after Layer.Close: %v, want net.ErrClosed", err)
	}
	checkHealth(t, addr2) // the shared listener is still open
}

func TestMuxRefusesUnknownGroups(t *testing.T) {
	m1, _ := testMux(t)
	_, addr2 := testMux(t)
	d, err := layer(t, m1, "x").Dial(raft.ServerAddress(addr2), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, d); got != "" {
		t.Fatalf("read %q on a connection for an unknown group", got)
	}
}

func TestMuxClosesBadHeaders(t *testing.T) {
	l := listen(t)
	m, err := newMux(l, "", testLogger(t, slog.LevelDebug), 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	layer(t, m, "x")
	for name, header := range map[string]string{
		"nothing":     "",
		"no name":     "\x05ab",
		"empty name":  "\x00",
		"long name":   "\x81\x08" + strings.Repeat("x", 1025),
		"bad uvarint": "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
	} {
		t.Run(name, func(t *testing.T) {
			c := dial(t, l.Addr().String())
			if _, err := c.Write([]byte(header)); err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, c); got != "" {
				t.Fatalf("read %q", got)
			}
		})
	}
}

func TestMuxLayerErrors(t *testing.T) {
	m, _ := testMux(t)
	layer(t, m, "x")
	if _, err := m.Layer("x"); !errors.Is(err, ErrGroupRegistered) {
		t.Errorf("second Layer(x): %v, want ErrGroupRegistered", err)
	}
	for _, group := range []string{"", strings.Repeat("g", maxGroupLen+1)} {
		if _, err := m.Layer(group); !errors.Is(err, ErrGroupName) {
			t.Errorf("Layer(%.10q...): %v, want ErrGroupName", group, err)
		}
	}
	layer(t, m, strings.Repeat("g", maxGroupLen))
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Layer("y"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Layer after Close: %v, want net.ErrClosed", err)
	}
}

func TestMuxCloseClosesLayers(t *testing.T) {
	m, _ := testMux(t)
	l := layer(t, m, "x")
	done := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		done <- err
	}()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Layer.Accept during Mux.Close: %v, want net.ErrClosed", err)
	}
}

func TestNewChecksAdvertise(t *testing.T) {
	for _, tc := range []struct {
		advertise string
		ok        bool
	}{
		{"", true}, // the listener's 127.0.0.1:port
		{"node1.example:7000", true},
		{"10.0.0.1:7000", true},
		{"[fd00::1]:7000", true},
		{"0.0.0.0:7000", false},
		{"[::]:7000", false},
		{":7000", false},
		{"node1.example", false},
		{"node1.example:0", false},
	} {
		l := listen(t)
		m, err := New(l, tc.advertise, testLogger(t, slog.LevelDebug))
		if tc.ok != (err == nil) || err != nil && !errors.Is(err, ErrAdvertise) {
			t.Errorf("New(%q): %v", tc.advertise, err)
		}
		if err != nil {
			l.Close()
			continue
		}
		if want := tc.advertise; want != "" && m.addr.String() != want {
			t.Errorf("New(%q) advertises %v", tc.advertise, m.addr)
		}
		m.Close()
	}
}
