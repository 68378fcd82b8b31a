package main

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
)

func TestAppendJSONRecord(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	cases := []struct {
		name string
		rec  client.Record
		want map[string]any
	}{
		{"text", client.Record{Topic: "t", Partition: 2, Offset: 9, Timestamp: ts, Key: []byte("k"), Value: []byte("héllo \"q\" \\ \n\t\x01 ☃")},
			map[string]any{"topic": "t", "partition": 2.0, "offset": 9.0, "timestamp": "2026-01-02T03:04:05.006Z",
				"key": "k", "value": "héllo \"q\" \\ \n\t\x01 ☃", "headers": []any{}}},
		{"no key, headers", client.Record{Topic: "t", Timestamp: ts, Value: []byte{}, Headers: []client.Header{{Key: "a", Value: []byte("1")}, {Key: "a", Value: []byte{0xff}}}},
			map[string]any{"topic": "t", "partition": 0.0, "offset": 0.0, "timestamp": "2026-01-02T03:04:05.006Z",
				"key": nil, "value": "", "headers": []any{
					map[string]any{"key": "a", "value": "1"},
					map[string]any{"key": "a", "value": base64.StdEncoding.EncodeToString([]byte{0xff}), "encoding": "base64"},
				}}},
		{"binary", client.Record{Topic: "t", Timestamp: ts, Key: []byte("k"), Value: []byte{0xff, 0xfe, 0}},
			map[string]any{"topic": "t", "partition": 0.0, "offset": 0.0, "timestamp": "2026-01-02T03:04:05.006Z",
				"key": base64.StdEncoding.EncodeToString([]byte("k")), "value": base64.StdEncoding.EncodeToString([]byte{0xff, 0xfe, 0}),
				"encoding": "base64", "headers": []any{}}},
	}
	for _, tc := range cases {
		line := appendJSONRecord(nil, &tc.rec)
		if !strings.HasSuffix(string(line), "}\n") || strings.Count(string(line), "\n") != 1 {
			t.Errorf("%s: not one line: %q", tc.name, line)
		}
		var got map[string]any
		if err := json.Unmarshal(line, &got); err != nil {
			t.Fatalf("%s: %q is not JSON: %v", tc.name, line, err)
		}
		gotJSON, _ := json.Marshal(got)
		wantJSON, _ := json.Marshal(tc.want)
		if string(gotJSON) != string(wantJSON) {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, gotJSON, wantJSON)
		}
	}
}

// FuzzAppendJSONString checks that any valid UTF-8 string comes back
// unchanged through encoding/json.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "\"\\\n\r\t\x00\x1f\x7f", "é☃😀", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		s = strings.ToValidUTF8(s, "?")
		var back string
		if err := json.Unmarshal(appendJSONString(nil, s), &back); err != nil || back != s {
			t.Fatalf("%q came back as %q (%v)", s, back, err)
		}
	})
}

func TestProduceKeyAcksAndBinary(t *testing.T) {
	addr := startBroker(t, broker.Options{NoSync: true})
	mustCLI(t, addr, "", "topic", "create", "t", "-p", "4")
	mustCLI(t, addr, "a\nb\n\xff\xfe\n", "produce", "t", "--key", "same", "--acks", "leader")
	recs := parseJSONLines(t, mustCLI(t, addr, "", "consume", "t", "--until-end", "--format", "json"))
	if len(recs) != 3 {
		t.Fatalf("consumed %d records, want 3", len(recs))
	}
	for i, r := range recs {
		if r.Partition != recs[0].Partition || r.Offset != int64(i) {
			t.Fatalf("record %d at %d/%d: one key must go to one partition, in order", i, r.Partition, r.Offset)
		}
	}
	if recs[0].Key != "same" || recs[0].Value != "a" || recs[0].Encoding != "" {
		t.Fatalf("first record %+v", recs[0])
	}
	if recs[2].Encoding != "base64" || recs[2].Value != base64.StdEncoding.EncodeToString([]byte{0xff, 0xfe}) {
		t.Fatalf("binary record %+v, want base64", recs[2])
	}
	// --acks none: records are accepted without offsets; they still arrive.
	mustCLI(t, addr, "c\n", "produce", "t", "--partition", "3", "--acks", "none")
	waitFor(t, "the acks=none record to be readable", func() bool {
		return mustCLI(t, addr, "", "consume", "t", "--partition", "3", "--until-end") == "c\n"
	})
	_, _, errLine := cli(t, addr, "x\n", "produce", "t", "--key-sep", ":")
	if !strings.Contains(errLine, "no key separator") {
		t.Fatalf("a line without the separator gave %q", errLine)
	}
}
