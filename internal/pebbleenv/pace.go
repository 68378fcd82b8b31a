package pebbleenv

import (
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Pacing background writes.
//
// A memtable flush writes its whole memtable (64 MiB) as fast as the disk
// takes it, and every node's stores fill theirs at about the same rate, so
// their flushes tend to land together. While they run, the write-ahead log
// syncs that acknowledged writes wait for queue behind the flushes' data in
// the disk (and in ext4's journal, which a sync must commit with the data
// written before it): on a laptop-class disk a sync that takes 0.4 ms
// alone takes 50–200 ms then, and the produce latency's tail is the
// flushes'.
//
// PacedFS spreads the writes of sstables and blob files (flushes and
// compactions) over time instead, at a rate a few times the rate at which
// write-ahead logs are written (what the stores take in), so that the
// background keeps up with the foreground with room to spare, and never
// below a floor. Write-ahead log writes are never paced.

const (
	// paceFactor is how many times the write-ahead log's recent rate the
	// background may write at: a cluster node flushes each byte twice
	// (raft log and partition log) and compacts some of it again.
	paceFactor = 4
	// paceFloor is the slowest the background is ever paced, in bytes/s.
	paceFloor = 32 << 20
	// paceTau is the time constant of the write-ahead log rate's moving
	// average: it follows a jump in load within a second or two.
	paceTau = time.Second
	// paceBurst is how far ahead of its pace the background may write.
	paceBurst = 20 * time.Millisecond
	// paceSample is how often the write-ahead log rate is sampled.
	paceSample = 100 * time.Millisecond
)

// PacedFS is a vfs.FS whose sstable and blob file writes are paced; share
// one between the stores of a process, which share its disk. Use NewPacedFS.
type PacedFS struct {
	vfs.FS
	off atomic.Bool

	mu       sync.Mutex
	walBytes int64     // write-ahead log bytes since sampleAt
	sampleAt time.Time // start of the current sample
	walRate  float64   // moving average of the write-ahead log's bytes/s
	next     time.Time // when the background is next due to write
	now      func() time.Time
	sleep    func(time.Duration)
}

var _ vfs.FS = (*PacedFS)(nil)

// NewPacedFS wraps fs; nil means vfs.Default.
func NewPacedFS(fs vfs.FS) *PacedFS {
	if fs == nil {
		fs = vfs.Default
	}
	return &PacedFS{FS: fs, now: time.Now, sleep: time.Sleep}
}

// Unpace turns pacing off for good: a closing store's final flush should
// not wait.
func (fs *PacedFS) Unpace() { fs.off.Store(true) }

// Rate returns the rate the background is paced at now, in bytes/s.
func (fs *PacedFS) Rate() float64 {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.sampleLocked(fs.now())
	return fs.rateLocked()
}

func (fs *PacedFS) rateLocked() float64 {
	return max(paceFloor, paceFactor*fs.walRate)
}

// sampleLocked folds the write-ahead log bytes since the last sample into
// the moving average once a sample period has passed.
func (fs *PacedFS) sampleLocked(now time.Time) {
	if fs.sampleAt.IsZero() {
		fs.sampleAt = now
		return
	}
	el := now.Sub(fs.sampleAt)
	if el < paceSample {
		return
	}
	inst := float64(fs.walBytes) / el.Seconds()
	alpha := 1 - math.Exp(-el.Seconds()/paceTau.Seconds())
	fs.walRate += alpha * (inst - fs.walRate)
	fs.walBytes = 0
	fs.sampleAt = now
}

func (fs *PacedFS) wroteWAL(n int) {
	fs.mu.Lock()
	fs.walBytes += int64(n)
	fs.sampleLocked(fs.now())
	fs.mu.Unlock()
}

// pace waits until the background may write n more bytes.
func (fs *PacedFS) pace(n int) {
	if fs.off.Load() {
		return
	}
	fs.mu.Lock()
	now := fs.now()
	fs.sampleLocked(now)
	if floor := now.Add(-paceBurst); fs.next.Before(floor) {
		fs.next = floor
	}
	fs.next = fs.next.Add(time.Duration(float64(n) / fs.rateLocked() * float64(time.Second)))
	d := fs.next.Sub(now)
	fs.mu.Unlock()
	if d > 0 {
		fs.sleep(d)
	}
}

// isBackground reports whether name is a file that flushes and compactions
// write: an sstable or a blob file.
func isBackground(name string) bool {
	return strings.HasSuffix(name, ".sst") || strings.HasSuffix(name, ".blob")
}

func (fs *PacedFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return f, err
	}
	switch {
	case isWAL(name):
		return &pacedFile{File: f, fs: fs, wal: true}, nil
	case isBackground(name):
		return &pacedFile{File: f, fs: fs}, nil
	}
	return f, nil
}

func (fs *PacedFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

func (fs *PacedFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return fs.wrap(name, f, err)
}

func (fs *PacedFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(newname, f, err)
}

// Unwrap returns the wrapped file system.
func (fs *PacedFS) Unwrap() vfs.FS { return fs.FS }

// pacedFile is a write-ahead log, whose writes are counted, or a
// background file, whose writes are paced.
type pacedFile struct {
	vfs.File
	fs  *PacedFS
	wal bool
}

func (f *pacedFile) before(n int) {
	if f.wal {
		f.fs.wroteWAL(n)
	} else {
		f.fs.pace(n)
	}
}

func (f *pacedFile) Write(p []byte) (int, error) {
	f.before(len(p))
	return f.File.Write(p)
}

func (f *pacedFile) WriteAt(p []byte, off int64) (int, error) {
	f.before(len(p))
	return f.File.WriteAt(p, off)
}
