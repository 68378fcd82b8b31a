package log

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/runnel-dev/runnel/internal/pebbleenv"
)

// Options configures a Store. The zero value works: defaults are filled in by
// Open.
type Options struct {
	// FS is the file system Pebble runs on; nil means vfs.Default. Tests use
	// vfs.NewCrashableMem.
	FS vfs.FS
	// NoSync makes Append return without waiting for the write-ahead log to
	// reach stable storage. A crash can then lose acknowledged batches.
	NoSync bool
	// NoWAL turns Pebble's write-ahead log off, for a store whose logs are
	// written only by replicated owners (ApplyAt, AppendRaw, Reset) that
	// keep a durable copy of every write elsewhere, as a cluster's raft
	// logs: each write is then copied once less, and reaches the disk when
	// its memtable is flushed. A crash, of the process alone too, loses what
	// was written since the last flush; Sync flushes, and the owner replays
	// the rest from its copy. Append and WriteState fail with ErrNoWAL on
	// such a store.
	NoWAL bool
	// CheckpointBytes and CheckpointInterval set how often a store without
	// a write-ahead log flushes on its own: once CheckpointBytes have been
	// written since the last flush, and once per CheckpointInterval when
	// anything has. Each flush moves every open log's Durable up, so its
	// owner can drop the durable copy it keeps (a raft log compacts up to
	// there) while that copy is still in its store's memtable, which then
	// never writes it to disk a second time. Zero means 16 MiB and 10
	// seconds; a negative CheckpointBytes turns the checkpoints off.
	CheckpointBytes    int64
	CheckpointInterval time.Duration
	// RetentionInterval is how often the Store enforces each open log's
	// retention; 0 means one minute and a negative value disables the loop.
	RetentionInterval time.Duration
	// Logger receives the Store's and Pebble's messages; nil means
	// slog.Default. Pebble's routine messages go out at debug level.
	Logger *slog.Logger
	// Now is the clock retention by age reads; nil means time.Now.
	Now func() time.Time
	// CacheBytes is the size of Pebble's block cache; 0 means 64 MiB.
	CacheBytes int64

	// indexInterval is how many appended bytes separate time index entries;
	// 0 means defaultIndexInterval.
	indexInterval int64
	// memTableSize is Pebble's memtable size; 0 means defaultMemTableSize.
	memTableSize uint64
	// noValueSeparation keeps batch bytes inside sstables instead of blob
	// files.
	noValueSeparation bool
}

const (
	defaultRetentionInterval = time.Minute
	defaultCacheBytes        = 64 << 20
	defaultIndexInterval     = 64 << 10
	defaultMemTableSize      = 64 << 20
	// A checkpoint every 16 MiB keeps each flush a quarter of a memtable,
	// and the owner's copy short enough to be dropped before its own
	// memtable (64 MiB in internal/raftstore) is flushed.
	defaultCheckpointBytes    = 16 << 20
	defaultCheckpointInterval = 10 * time.Second
	// checkpointGap is the least time between two checkpoints' starts: at
	// 80 MB/s, 16 MiB would be five flushes a second, and 1 KB records
	// lost 15% of their throughput to them in same-run pairs.
	checkpointGap = time.Second
)

// withDefaults returns o with defaults filled in, or an error for a value
// that makes no sense.
func (o Options) withDefaults() (Options, error) {
	if o.CacheBytes < 0 {
		return o, fmt.Errorf("log: CacheBytes %d is negative", o.CacheBytes)
	}
	if o.indexInterval < 0 {
		return o, errors.New("log: negative index interval")
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.CheckpointBytes == 0 {
		o.CheckpointBytes = defaultCheckpointBytes
	}
	if o.CheckpointInterval < 0 {
		return o, fmt.Errorf("log: CheckpointInterval %v is negative", o.CheckpointInterval)
	}
	if o.CheckpointInterval == 0 {
		o.CheckpointInterval = defaultCheckpointInterval
	}
	if o.RetentionInterval == 0 {
		o.RetentionInterval = defaultRetentionInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = defaultCacheBytes
	}
	if o.indexInterval == 0 {
		o.indexInterval = defaultIndexInterval
	}
	if o.memTableSize == 0 {
		o.memTableSize = defaultMemTableSize
	}
	return o, nil
}

// pebbleOptions returns the Pebble configuration for a write-heavy,
// append-only workload of large values. The choices are measured by the
// benchmarks in bench_test.go.
func (o Options) pebbleOptions(fs vfs.FS, cache *pebble.Cache, stalls *atomic.Int64) *pebble.Options {
	po := &pebble.Options{
		FS:    fs,
		Cache: cache,
		// Value separation needs the newest format.
		FormatMajorVersion: pebble.FormatNewest,
		// A large memtable absorbs bursts and makes fewer, larger flushes.
		MemTableSize:                o.memTableSize,
		MemTableStopWritesThreshold: 4,
		// Keys are written in offset order per log, so L0 files overlap only
		// across logs; let L0 grow a little before stalling writes.
		L0CompactionThreshold: 4,
		L0StopWritesThreshold: 24,
		Logger:                pebbleenv.Logger(o.Logger),
		EventListener:         pebbleenv.EventListener(o.Logger, stalls),
		DisableWAL:            o.NoWAL,
	}
	// MinLZ at its fastest level rather than Pebble's default, Snappy: it
	// is faster and compresses better (JSON records to 23% rather than
	// 26%); flushes compress every batch once.
	po.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionFastest })
	if !o.noValueSeparation {
		// Batches are large values that are written once and deleted in
		// order; in blob files compactions move only keys and handles.
		po.Experimental.ValueSeparationPolicy = pebbleenv.ValueSeparation
	}
	return po
}
