package raftmux

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func FuzzReadGroup(f *testing.F) {
	f.Add(appendHeader(nil, "a")[len(magic):])
	f.Add(appendHeader(nil, "partition/orders/0")[len(magic):])
	f.Add([]byte{0x80})
	f.Add([]byte{0x00})
	f.Add([]byte{0x81, 0x08})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		group, err := readGroup(r)
		if err != nil {
			return
		}
		if err := checkGroup(group); err != nil {
			t.Fatalf("read group %q that Layer would refuse: %v", group, err)
		}
		// It read a length and the name, nothing after.
		read := data[:len(data)-r.Len()]
		n, k := binary.Uvarint(read)
		if k <= 0 || n != uint64(len(group)) || string(read[k:]) != group {
			t.Fatalf("read %x for group %q", read, group)
		}
	})
}
