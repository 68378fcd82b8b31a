package raftstore

import (
	"encoding/binary"
	"math"
)

// Key prefixes: every key starts with one of these, then the group id as a
// uvarint length and its bytes. The uvarint makes the (length, id) pair
// self-delimiting, so no group's keys are a prefix of another's and every
// group's keys of one kind are one contiguous range.
const (
	prefixLog    byte = 'l' // + index:8 big-endian → encoded raft.Log
	prefixStable byte = 's' // + raft's stable-store key → value
)

// groupPrefix returns prefix, the uvarint length of id and id.
func groupPrefix(prefix byte, id string) []byte {
	k := make([]byte, 0, 1+binary.MaxVarintLen64+len(id)+8)
	k = append(k, prefix)
	k = binary.AppendUvarint(k, uint64(len(id)))
	return append(k, id...)
}

// prefixEnd returns the smallest key greater than every key that starts
// with p. p always starts with a prefix byte below 0xff, so one exists.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	panic("raftstore: no key follows an all-0xff prefix")
}

// logKey returns the key of entry index in the group whose log prefix is p.
func logKey(p []byte, index uint64) []byte {
	k := make([]byte, len(p), len(p)+8)
	copy(k, p)
	return binary.BigEndian.AppendUint64(k, index)
}

// logKeyEnd returns the smallest key after entry max: the exclusive end of
// a range delete that ends at max.
func logKeyEnd(p []byte, max uint64) []byte {
	if max == math.MaxUint64 {
		return prefixEnd(p)
	}
	return logKey(p, max+1)
}

// logIndex returns the index in a log key with prefix p.
func logIndex(p, key []byte) (uint64, bool) {
	if len(key) != len(p)+8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(key[len(p):]), true
}

// stableKey returns the key of stable-store key k in the group whose
// stable prefix is p.
func stableKey(p, k []byte) []byte {
	key := make([]byte, len(p), len(p)+len(k))
	copy(key, p)
	return append(key, k...)
}
