package pebbleenv

import (
	"strings"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// FS is a vfs.FS that counts. Use New.
type FS struct {
	vfs.FS
	walSyncs     atomic.Int64
	walBytes     atomic.Int64
	bytesWritten atomic.Int64
}

var _ vfs.FS = (*FS)(nil)

// isWAL reports whether name is a Pebble write-ahead log file.
func isWAL(name string) bool { return strings.HasSuffix(name, ".log") }

func (fs *FS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return f, err
	}
	return &countingFile{File: f, fs: fs, wal: isWAL(name)}, nil
}

func (fs *FS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

func (fs *FS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return fs.wrap(name, f, err)
}

func (fs *FS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(newname, f, err)
}

// Unwrap returns the wrapped file system.
func (fs *FS) Unwrap() vfs.FS { return fs.FS }

// walPreallocStep is how far ahead of its writes a write-ahead log file's
// space is reserved. Pebble asks for 110% of the memtable size at once in
// each new log (70 MiB with runnel's 64 MiB memtables) and keeps up to five
// used logs for reuse; memtables start small and double, so a store's first
// logs hold a few hundred KiB each, and a node holding a megabyte of
// records took 280 MiB of disk per store.
const walPreallocStep = 4 << 20

type countingFile struct {
	vfs.File
	fs  *FS
	wal bool
	// end is the end of the log's writes so far, and reserved the end of
	// the space reserved for it.
	end, reserved int64
}

// Preallocate reserves space ahead of a write-ahead log's writes
// walPreallocStep at a time, whatever Pebble asks for; other files get
// what they ask for.
func (f *countingFile) Preallocate(off, length int64) error {
	if f.wal {
		return nil
	}
	return f.File.Preallocate(off, length)
}

// reserve keeps the space of a write-ahead log reserved up to a step past
// the end of its writes. Like Pebble, it ignores a failure: the write that
// follows reports a full disk.
func (f *countingFile) reserve(end int64) {
	if end > f.end {
		f.end = end
	}
	if f.end < f.reserved {
		return
	}
	from := f.reserved
	f.reserved = (f.end/walPreallocStep + 1) * walPreallocStep
	_ = f.File.Preallocate(from, f.reserved-from)
}

func (f *countingFile) wrote(n int) {
	f.fs.bytesWritten.Add(int64(n))
	if f.wal {
		f.fs.walBytes.Add(int64(n))
	}
}

func (f *countingFile) synced() {
	if f.wal {
		f.fs.walSyncs.Add(1)
	}
}

func (f *countingFile) Write(p []byte) (int, error) {
	if f.wal {
		f.reserve(f.end + int64(len(p)))
	}
	n, err := f.File.Write(p)
	f.wrote(n)
	return n, err
}

func (f *countingFile) WriteAt(p []byte, off int64) (int, error) {
	if f.wal {
		f.reserve(off + int64(len(p)))
	}
	n, err := f.File.WriteAt(p, off)
	f.wrote(n)
	return n, err
}

func (f *countingFile) Sync() error {
	f.synced()
	return f.File.Sync()
}

func (f *countingFile) SyncData() error {
	f.synced()
	return f.File.SyncData()
}

func (f *countingFile) SyncTo(length int64) (bool, error) {
	f.synced()
	return f.File.SyncTo(length)
}

// New wraps fs; nil means vfs.Default.
func New(fs vfs.FS) *FS {
	if fs == nil {
		fs = vfs.Default
	}
	return &FS{FS: fs}
}

// WALSyncs returns the syncs of write-ahead log files so far.
func (fs *FS) WALSyncs() int64 { return fs.walSyncs.Load() }

// WALBytes returns the bytes written to write-ahead log files so far.
func (fs *FS) WALBytes() int64 { return fs.walBytes.Load() }

// BytesWritten returns the bytes written to any file so far.
func (fs *FS) BytesWritten() int64 { return fs.bytesWritten.Load() }
