package raftstore

import (
	"bytes"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
)

func TestCodecRoundTrip(t *testing.T) {
	for _, l := range []raft.Log{
		{},
		{Term: 1, Type: raft.LogNoop},
		{Term: math.MaxUint64, Type: raft.LogType(255), Data: []byte("d"), Extensions: []byte("e")},
		{Term: 3, Data: bytes.Repeat([]byte{7}, 300), AppendedAt: time.Unix(-1, 999_999_999)},
		{Term: 3, AppendedAt: time.Unix(0, 0)},
		{Term: 3, AppendedAt: time.Date(9999, 12, 31, 23, 59, 59, 1, time.UTC)},
		{Term: 3, AppendedAt: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)},
	} {
		v := make([]byte, encodedLen(&l))
		encode(v, &l)
		var got raft.Log
		if err := decode(v, &got); err != nil {
			t.Errorf("decode(encode(%+v)): %v", l, err)
			continue
		}
		if diff := cmp.Diff(l, got, logOpts); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	valid := func() []byte {
		l := raft.Log{Term: 5, Data: []byte("x"), Extensions: []byte("ext"), AppendedAt: time.Unix(10, 5)}
		v := make([]byte, encodedLen(&l))
		encode(v, &l)
		return v
	}
	for name, tc := range map[string]struct {
		v    []byte
		want error
	}{
		"empty":     {nil, errShort},
		"header":    {[]byte{codecVersion, 0}, errShort},
		"version":   {append([]byte{2}, valid()[1:]...), errVersion},
		"flags":     {[]byte{codecVersion, 0, 0x80, 1}, errFlags},
		"no term":   {[]byte{codecVersion, 0, 0}, errShort},
		"no time":   {[]byte{codecVersion, 0, flagAppendedAt, 1}, errShort},
		"nsec":      {[]byte{codecVersion, 0, flagAppendedAt, 1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}, errTime},
		"ext short": {[]byte{codecVersion, 0, flagExtensions, 1, 5, 'a'}, errShort},
		"truncated": {valid()[:7], errShort},
	} {
		var l raft.Log
		if err := decode(tc.v, &l); !errors.Is(err, tc.want) {
			t.Errorf("%s: decode(%x) = %v; want %v", name, tc.v, err, tc.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	l := raft.Log{Term: 5, Type: raft.LogCommand, Data: []byte("data"), Extensions: []byte("e"), AppendedAt: time.Unix(1e9, 7)}
	v := make([]byte, encodedLen(&l))
	encode(v, &l)
	f.Add(v)
	f.Add([]byte{codecVersion, 0, 0, 0})
	f.Fuzz(func(t *testing.T, v []byte) {
		var l raft.Log
		if err := decode(v, &l); err != nil {
			return
		}
		// What decodes re-encodes to a value that decodes the same.
		again := make([]byte, encodedLen(&l))
		encode(again, &l)
		var l2 raft.Log
		if err := decode(again, &l2); err != nil {
			t.Fatalf("decode(encode(decode(%x))): %v", v, err)
		}
		if diff := cmp.Diff(l, l2, logOpts); diff != "" {
			t.Fatalf("re-encoding changed the entry (-first +second):\n%s", diff)
		}
	})
}
