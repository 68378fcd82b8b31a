package raftstore

import (
	"errors"
	"fmt"
)

var (
	// ErrKeyNotFound is returned by Group.Get and Group.GetUint64 for a key
	// that was never set. Its text is exactly "not found" because
	// hashicorp/raft recognises a missing stable-store key by that text
	// (raft-boltdb's ErrKeyNotFound reads the same); callers in Go compare
	// with errors.Is.
	ErrKeyNotFound = errors.New("not found")

	// ErrClosed is returned by every method of a Store, and of its groups,
	// after Close.
	ErrClosed = errors.New("raftstore: closed")

	// ErrDropped is returned by every method of a Group after DropGroup
	// removed it. A later Store.Group call with the same id returns a new,
	// empty group.
	ErrDropped = errors.New("raftstore: group dropped")

	// ErrCorrupt is matched, wrapped with the group, the key and what is
	// wrong, by errors for a stored value that cannot be decoded.
	ErrCorrupt = errors.New("raftstore: corrupt value")
)

// corruptf returns an error matching ErrCorrupt, as
// "raftstore: group 3/0: log 42: corrupt value: <what>".
func corruptf(group, where, format string, args ...any) error {
	return fmt.Errorf("raftstore: group %s: %s: %w: %s", group, where, ErrCorrupt, fmt.Sprintf(format, args...))
}
