package raftstore

import (
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/runnel-dev/runnel/internal/pebbleenv"
)

// Options configures a Store. The zero value works: Open fills in defaults.
type Options struct {
	// FS is the file system Pebble runs on; nil means vfs.Default. Tests
	// use vfs.NewMem or vfs.NewCrashableMem.
	FS vfs.FS
	// Logger receives the Store's and Pebble's messages; nil means
	// slog.Default. Pebble's routine messages go out at debug level.
	Logger *slog.Logger
	// NoSync makes writes return before they reach stable storage. Raft's
	// safety rests on its log and stable store being durable, so this is for
	// tests only: a crash can lose entries and votes raft believes kept.
	NoSync bool
	// EntryCacheBytes bounds the memory of the entry cache: the newest
	// entries of all groups, which raft reads back right after storing
	// them (replication on a leader, the state machine on a follower).
	// Zero means 64 MiB; a negative value turns the cache off.
	EntryCacheBytes int64

	// noValueSeparation keeps entries inside sstables instead of blob files;
	// the benchmark compares the two.
	noValueSeparation bool
}

const (
	cacheBytes             = 32 << 20
	memTableSize           = 64 << 20
	defaultEntryCacheBytes = 64 << 20
)

// withDefaults returns o with defaults filled in.
func (o Options) withDefaults() Options {
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.EntryCacheBytes == 0 {
		o.EntryCacheBytes = defaultEntryCacheBytes
	}
	return o
}

// writeOptions returns how writes are committed.
func (o Options) writeOptions() *pebble.WriteOptions {
	if o.NoSync {
		return pebble.NoSync
	}
	return pebble.Sync
}

// pebbleOptions returns the Pebble configuration for raft logs: entries of
// up to a few MiB appended in index order, read back soon after (by
// followers' replication and by the FSM), and deleted in index order once a
// snapshot covers them.
func (o Options) pebbleOptions(fs vfs.FS, cache *pebble.Cache) *pebble.Options {
	po := &pebble.Options{
		FS:    fs,
		Cache: cache,
		// Value separation needs the newest format.
		FormatMajorVersion: pebble.FormatNewest,
		// A large memtable holds the recent entries that replication and
		// the FSM read back, and makes fewer, larger flushes. Batches over
		// half of it are committed as their own flushable memtable.
		MemTableSize:                memTableSize,
		MemTableStopWritesThreshold: 4,
		// Each group writes keys in index order, so L0 files overlap only
		// across groups; let L0 grow a little before stalling writes.
		L0CompactionThreshold: 4,
		L0StopWritesThreshold: 24,
		Logger:                pebbleenv.Logger(o.Logger),
		EventListener:         pebbleenv.EventListener(o.Logger, nil),
	}
	// MinLZ at its fastest level rather than Pebble's default, Snappy: it
	// is faster and compresses better (JSON records to 23% rather than
	// 26%), which matters here because every entry is flushed once
	// before raft truncates it.
	po.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionFastest })
	if !o.noValueSeparation {
		// Entries are large values written once and deleted in order; in
		// blob files compactions move only keys and handles, and a blob
		// file whose entries are all truncated is deleted whole.
		po.Experimental.ValueSeparationPolicy = pebbleenv.ValueSeparation
	}
	return po
}
