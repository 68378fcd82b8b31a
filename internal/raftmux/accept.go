package raftmux

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// acceptor accepts connections from a listener and runs a handler on each in
// a goroutine of its own, so that one slow connection never holds up Accept.
// It owns those goroutines: close closes the listener and every connection
// still held by a handler, and waits for the goroutines to return. A handler
// calls release before it hands its connection on; from then on the
// connection is no longer the acceptor's to close.
type acceptor struct {
	l      net.Listener
	logger *slog.Logger
	handle func(net.Conn)

	// done is closed when the accept loop stops, err having been set to
	// why: net.ErrClosed after close, otherwise the listener's error.
	done     chan struct{}
	err      error
	stopOnce sync.Once
	wg       sync.WaitGroup

	mu      sync.Mutex
	held    map[net.Conn]struct{} // connections in a handler, not released
	closing bool
}

// newAcceptor returns an acceptor for l; start starts it. handle must call
// a.release(c) before handing c on, and close c if it does not.
func newAcceptor(l net.Listener, logger *slog.Logger, handle func(net.Conn)) *acceptor {
	return &acceptor{
		l:      l,
		logger: logger,
		handle: handle,
		done:   make(chan struct{}),
		held:   make(map[net.Conn]struct{}),
	}
}

// start starts the accept loop.
func (a *acceptor) start() {
	a.wg.Add(1)
	go a.run()
}

func (a *acceptor) run() {
	defer a.wg.Done()
	var delay time.Duration
	for {
		c, err := a.l.Accept()
		if err != nil {
			// Back off on errors that pass, such as running out of file
			// descriptors, as net/http and gRPC do.
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() && !errors.Is(err, net.ErrClosed) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				a.logger.Warn("raftmux: accept failed, retrying", "delay", delay, "error", err)
				select {
				case <-time.After(delay):
					continue
				case <-a.done:
					return
				}
			}
			a.stop(err)
			return
		}
		delay = 0
		a.mu.Lock()
		if a.closing {
			a.mu.Unlock()
			_ = c.Close()
			continue
		}
		a.held[c] = struct{}{}
		a.mu.Unlock()
		a.wg.Add(1) // run's own count is held, so this never races Wait.
		go func() {
			defer a.wg.Done()
			a.handle(c)
		}()
	}
}

// release hands c over from the acceptor to the handler's caller. It
// reports false if the acceptor is closing, in which case c has been or is
// being closed and must not be handed on.
func (a *acceptor) release(c net.Conn) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.held, c)
	return !a.closing
}

// reject releases and closes c, logging why at debug level.
func (a *acceptor) reject(c net.Conn, msg string, args ...any) {
	a.logger.Debug(msg, append(args, "remote", c.RemoteAddr().String())...)
	a.release(c)
	_ = c.Close()
}

// stop marks the accept loop stopped for err.
func (a *acceptor) stop(err error) {
	a.stopOnce.Do(func() {
		if errors.Is(err, net.ErrClosed) {
			err = net.ErrClosed
		}
		a.err = err
		close(a.done)
	})
}

// close closes the listener and the held connections and waits for the
// goroutines. It returns the listener's Close error.
func (a *acceptor) close() error {
	a.mu.Lock()
	a.closing = true
	held := a.held
	a.held = make(map[net.Conn]struct{})
	a.mu.Unlock()
	for c := range held {
		_ = c.Close()
	}
	err := a.l.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil // closed already, by the owner or by an earlier close
	}
	a.stop(net.ErrClosed)
	a.wg.Wait()
	return err
}
