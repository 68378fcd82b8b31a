package pebbleenv

import (
	"math"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// fakeClock is a clock that moves only when the paced writer sleeps or the
// test advances it.
type fakeClock struct {
	t     time.Time
	slept time.Duration
}

func (c *fakeClock) now() time.Time { return c.t }
func (c *fakeClock) sleep(d time.Duration) {
	c.t = c.t.Add(d)
	c.slept += d
}

func newTestPacedFS(t *testing.T) (*PacedFS, *fakeClock) {
	t.Helper()
	c := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	fs := NewPacedFS(vfs.NewMem())
	fs.now, fs.sleep = c.now, c.sleep
	return fs, c
}

func create(t *testing.T, fs vfs.FS, name string) vfs.File {
	t.Helper()
	f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// write writes total bytes to f in chunks, all at offset 0 so that the
// in-memory file stays small.
func write(t *testing.T, f vfs.File, total, chunk int) {
	t.Helper()
	buf := make([]byte, chunk)
	for n := 0; n < total; n += chunk {
		if _, err := f.WriteAt(buf, 0); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPacedFSIdleFloor(t *testing.T) {
	fs, c := newTestPacedFS(t)
	sst := create(t, fs, "000001.sst")
	write(t, sst, 64<<20, 64<<10)
	// 64 MiB at the 32 MiB/s floor takes two seconds, less the burst.
	want := 2*time.Second - paceBurst
	if d := c.slept - want; d < -time.Millisecond || d > time.Millisecond {
		t.Fatalf("64 MiB of sstable slept %v, want %v", c.slept, want)
	}
}

func TestPacedFSNeverPacesOtherFiles(t *testing.T) {
	fs, c := newTestPacedFS(t)
	for _, name := range []string{"000002.log", "MANIFEST-000001", "OPTIONS-000003", "marker.format-version.000001.024"} {
		write(t, create(t, fs, name), 64<<20, 1<<20)
	}
	if c.slept != 0 {
		t.Fatalf("write-ahead log and metadata writes slept %v, want none", c.slept)
	}
}

func TestPacedFSFollowsTheWriteAheadLog(t *testing.T) {
	fs, c := newTestPacedFS(t)
	wal := create(t, fs, "000002.log")
	// 100 MB/s into the write-ahead log for 5 s, in 10 ms steps.
	const walRate = 100e6
	for i := 0; i < 500; i++ {
		write(t, wal, walRate/100, walRate/1000)
		c.t = c.t.Add(10 * time.Millisecond)
	}
	got, want := fs.Rate(), paceFactor*walRate
	if math.Abs(got-want)/want > 0.05 {
		t.Fatalf("rate after 5 s of 100 MB/s write-ahead log: %.0f B/s, want ~%.0f", got, want)
	}
	// 40 MB of blob file at ~400 MB/s: a tenth of a second, less the
	// burst (the rate decays a little meanwhile, since the log is idle).
	sst := create(t, fs, "000003.blob")
	before := c.slept
	write(t, sst, 40e6, 1e6)
	if d := (c.slept - before).Seconds(); d < 0.075 || d > 0.095 {
		t.Fatalf("40 MB of blob file at %.0f B/s slept %.3fs, want ~0.08s", got, d)
	}

	// Once the load stops, the pace falls back to the floor within seconds.
	c.t = c.t.Add(10 * time.Second)
	if got := fs.Rate(); got != paceFloor {
		t.Fatalf("rate 10 s after the load stopped: %.0f B/s, want the floor %d", got, paceFloor)
	}
}

func TestPacedFSUnpace(t *testing.T) {
	fs, c := newTestPacedFS(t)
	sst := create(t, fs, "000001.sst")
	fs.Unpace()
	write(t, sst, 64<<20, 64<<10)
	if c.slept != 0 {
		t.Fatalf("after Unpace, 64 MiB of sstable slept %v", c.slept)
	}
}
