package broker

import (
	"reflect"
	"testing"
)

func TestOffsetsCommandRoundTrip(t *testing.T) {
	cmds := []*commitOffsetsCmd{
		{Ops: []offsetOp{}},
		{Ops: []offsetOp{{Group: "g", Offsets: map[string]int64{"orders/0": 17, "orders/11": 1 << 40}}}},
		{Ops: []offsetOp{
			{Group: "a", Offsets: map[string]int64{"t/0": 0}},
			{Group: "b", Force: true, Offsets: map[string]int64{"t/1": 3, "u/2": -1}},
			{Group: "a", Delete: true},
			{Group: "", Offsets: map[string]int64{"": 5}},
		}},
	}
	for _, want := range cmds {
		data := command{CommitOffsets: want}.encode()
		if data[0] != commandOffsets {
			t.Fatalf("encoded commit offsets start with %q, want the binary kind", data[0])
		}
		got, err := decodeCommand(data)
		if err != nil {
			t.Fatalf("decode %+v: %v", want, err)
		}
		if !reflect.DeepEqual(got, command{CommitOffsets: want}) {
			t.Fatalf("decoded %+v, want %+v", got.CommitOffsets, want)
		}
		// Every cut of the entry is refused, never misread.
		for i := 1; i < len(data); i++ {
			if c, err := decodeCommand(data[:i]); err == nil {
				t.Fatalf("decode of %d of %d bytes gave %+v, want an error", i, len(data), c.CommitOffsets)
			}
		}
		if _, err := decodeCommand(append(data, 0)); err == nil {
			t.Fatal("decode with a trailing byte: want an error")
		}
	}
}

// Entries written as JSON before the binary form keep decoding, and any
// other command stays JSON.
func TestCommandJSONStillDecodes(t *testing.T) {
	old := []byte(`{"commit_offsets":{"ops":[{"g":"g1","o":{"t/0":42}},{"g":"g2","d":true}]}}`)
	got, err := decodeCommand(old)
	if err != nil {
		t.Fatal(err)
	}
	want := &commitOffsetsCmd{Ops: []offsetOp{{Group: "g1", Offsets: map[string]int64{"t/0": 42}}, {Group: "g2", Delete: true}}}
	if !reflect.DeepEqual(got.CommitOffsets, want) {
		t.Fatalf("decoded %+v, want %+v", got.CommitOffsets, want)
	}
	name := "t"
	data := command{DeleteTopic: &name}.encode()
	if data[0] != '{' {
		t.Fatalf("a topic deletion encodes as %q, want JSON", data)
	}
}

func FuzzDecodeCommand(f *testing.F) {
	f.Add(command{CommitOffsets: &commitOffsetsCmd{Ops: []offsetOp{{Group: "g", Offsets: map[string]int64{"t/0": 1}}}}}.encode())
	f.Add([]byte{commandOffsets, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte(`{"delete_topic":"t"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := decodeCommand(data)
		if err != nil || c.CommitOffsets == nil || data[0] != commandOffsets {
			return
		}
		again, err := decodeCommand(c.encode())
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("re-encoding %+v: %+v, %v", c.CommitOffsets, again.CommitOffsets, err)
		}
	})
}
