package pebbleenv

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestEventListenerLogsFlushes checks that a flush and the compaction of
// its tables are logged at debug level with their sizes and durations, and
// that an empty flush is not.
func TestEventListenerLogsFlushes(t *testing.T) {
	var out bytes.Buffer
	l := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	db, err := pebble.Open("db", &pebble.Options{FS: vfs.NewMem(), EventListener: EventListener(l, nil), Logger: Logger(l)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "pebble flush") {
		t.Fatalf("an empty flush was logged:\n%s", out.String())
	}
	for i := range 2 {
		if err := db.Set([]byte{byte(i)}, []byte("v"), pebble.Sync); err != nil {
			t.Fatal(err)
		}
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Compact(t.Context(), []byte{0}, []byte{2}, true); err != nil {
		t.Fatal(err)
	}
	log := out.String()
	for _, want := range []string{`msg="pebble flush" memtable_bytes=`, "tables=1", `msg="pebble compaction" reason=`, "inputs="} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}
