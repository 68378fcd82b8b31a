//go:build unix

package raftmux

import (
	"errors"
	"io"
	"net"
	"syscall"
)

// peek copies into buf the bytes waiting on c, at least one, without
// consuming them, waiting under c's read deadline. It returns 0 and no
// error if c is not a socket it can peek at.
func peek(c net.Conn, buf []byte) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, nil
	}
	var n int
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		for {
			n, _, perr = syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK)
			if !errors.Is(perr, syscall.EINTR) {
				// false waits for the socket to become readable.
				return !errors.Is(perr, syscall.EAGAIN)
			}
		}
	})
	switch {
	case err != nil:
		return 0, err
	case perr != nil:
		return 0, perr
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}
