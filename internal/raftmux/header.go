package raftmux

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

const (
	// magic opens every raft connection; its last byte is the header
	// version.
	magic = "RNLRAFT\x01"

	// maxGroupLen bounds a group name, so a bad header cannot make the Mux
	// allocate much.
	maxGroupLen = 1024

	// prefixTimeout bounds how long Split waits for the magic and the Mux for
	// the rest of the header.
	prefixTimeout = 5 * time.Second
)

// appendHeader appends the header a Layer of group writes after dialing.
func appendHeader(b []byte, group string) []byte {
	b = append(b, magic...)
	b = binary.AppendUvarint(b, uint64(len(group)))
	return append(b, group...)
}

// checkGroup reports whether group can be named in a header.
func checkGroup(group string) error {
	if len(group) == 0 || len(group) > maxGroupLen {
		return fmt.Errorf("group %.40q: %w", group, ErrGroupName)
	}
	return nil
}

// readGroup reads the part of the header after the magic and returns the
// group name. It reads byte by byte where needed so that it never consumes
// a byte past the header.
func readGroup(r io.Reader) (string, error) {
	n, err := binary.ReadUvarint(byteReader{r})
	if err != nil {
		return "", fmt.Errorf("read group length: %w", err)
	}
	if n == 0 || n > maxGroupLen {
		return "", fmt.Errorf("group length %d: %w", n, ErrGroupName)
	}
	name := make([]byte, n)
	if _, err := io.ReadFull(r, name); err != nil {
		return "", fmt.Errorf("read group name: %w", err)
	}
	return string(name), nil
}

// byteReader reads one byte at a time from r.
type byteReader struct{ r io.Reader }

func (b byteReader) ReadByte() (byte, error) {
	var p [1]byte
	_, err := io.ReadFull(b.r, p[:])
	return p[0], err
}
