package log_test

import (
	"testing"

	"github.com/runnel-dev/runnel/log"
)

// TestWriteState writes state on its own, next to appended batches, and
// reads it back after a reopen.
func TestWriteState(t *testing.T) {
	dir := t.TempDir()
	s, err := log.Open(dir, log.Options{RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.Log(log.ID{Topic: 1})
	if err != nil {
		t.Fatal(err)
	}
	wait, err := l.WriteState([]log.StateOp{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("b"), Value: []byte("2")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	wait, err = l.WriteState([]log.StateOp{{Key: []byte("a")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.WriteState([]log.StateOp{{Key: nil, Value: []byte("x")}}); err == nil {
		t.Fatal("empty state key accepted")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = log.Open(dir, log.Options{RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, err = s.Log(log.ID{Topic: 1})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	if err := l.State(func(k, v []byte) error { got[string(k)] = string(v); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["b"] != "2" {
		t.Fatalf("state after reopen: %v, want b=2", got)
	}
}
