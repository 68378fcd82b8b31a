package pebbleenv

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// walDisk returns the disk space taken by the write-ahead logs in dir, the
// reserved space included, and their content.
func walDisk(t *testing.T, dir string) (disk, content int64) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".log") {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(dir, e.Name()), &st); err != nil {
			t.Fatal(err)
		}
		disk += st.Blocks * 512
		content += st.Size
	}
	return disk, content
}

// TestWALReservesSpaceInSteps checks that a store with runnel's 64 MiB
// memtables that holds a few MiB keeps its write-ahead logs, the used ones
// Pebble keeps for reuse among them, in a few MiB of disk rather than 70
// MiB each, and that a log's space is still reserved ahead of its writes.
func TestWALReservesSpaceInSteps(t *testing.T) {
	dir := t.TempDir()
	fs := New(nil)
	db, err := pebble.Open(dir, &pebble.Options{FS: fs, MemTableSize: 64 << 20, MemTableStopWritesThreshold: 4, Logger: Logger(slog.New(slog.DiscardHandler))})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	value := bytes.Repeat([]byte("v"), 1<<10)
	for round := range 6 { // each flush starts a new log; used ones are kept for reuse
		for i := range 500 {
			if err := db.Set(fmt.Appendf(nil, "k%d-%d", round, i), value, pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	// The newest log has no writes yet; give it some.
	for i := range 3000 {
		if err := db.Set(fmt.Appendf(nil, "last-%d", i), value, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	disk, content := walDisk(t, dir)
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	if len(logs) < 3 {
		t.Fatalf("want the store to keep several logs, found %v", logs)
	}
	if limit := content + int64(len(logs))*walPreallocStep; disk > limit {
		t.Errorf("%d write-ahead logs with %d bytes of content take %d bytes of disk; want at most %d", len(logs), content, disk, limit)
	}
	if disk < content+walPreallocStep/2 {
		t.Errorf("%d write-ahead logs with %d bytes of content take %d bytes of disk: no space is reserved ahead of the writes", len(logs), content, disk)
	}
	t.Logf("%d logs, %d bytes of content, %d bytes of disk", len(logs), content, disk)
}
