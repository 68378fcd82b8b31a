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

type countingFile struct {
	vfs.File
	fs  *FS
	wal bool
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
	n, err := f.File.Write(p)
	f.wrote(n)
	return n, err
}

func (f *countingFile) WriteAt(p []byte, off int64) (int, error) {
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
