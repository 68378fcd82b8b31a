// Package log stores partitions' records on disk: it appends record batches
// under dense int64 offsets, reads them back by offset or by time, enforces
// retention and recovers after a crash. Each partition is a Log; all logs of
// a node live in one Pebble database owned by a Store.
//
// Batches are stored as the producer encoded them (package record); Append
// checks the CRC and writes the base offset, and nothing re-encodes records.
//
// # On-disk format
//
// One Pebble database. Every key starts with a prefix byte and the log's ID
// (topic and partition, big-endian uint32 each), so each log's entries of one
// kind are contiguous and ordered, and a read by offset is one seek. All
// integers are big-endian; timestamps are ms since the Unix epoch, stored
// with the sign bit flipped so that they sort as signed numbers.
//
//	key                                               value
//	'd' topic:4 partition:4 base:8                    the batch, as appended (base offset set)
//	'b' topic:4 partition:4 base:8                    next:8 maxTS:8 size:4 cum:8
//	't' topic:4 partition:4 runMax:8 base:8           next:8 cum:8
//	'm' topic:4 partition:4                           start:8 cumStart:8
//	'a' topic:4 partition:4                           applied:8
//	's' topic:4 partition:4 key:…                     the owner's value
//
// 'd' holds the batches. base is the batch's first offset, next the one after
// its last record.
//
// 'b' is the batch index: one small entry per batch, so that recovery,
// sizes and retention never read batch bytes. cum is the log's cumulative
// appended bytes up to and including the batch; the size of a run of batches
// is a difference of two cums.
//
// 't' is the sparse time index: an entry for roughly every 64 KiB appended,
// where runMax is the largest record timestamp of every batch up to and
// including base. runMax never decreases along the log even when producer
// timestamps do, so entries sort by time and by offset at once.
// OffsetForTime seeks the last entry with runMax below the wanted time and
// scans the batch index from the batch after it.
//
// 'm' is written by retention: the new start offset and the cumulative bytes
// before it. It is how Start, and End, survive a restart after retention
// removed every batch. Reset writes it too.
//
// 'a' and 's' serve a replicated owner (package partition's raft state
// machine): 'a' is the index of the last write it applied, 's' its own small
// key space (idempotent producer state). ApplyAt writes them in the same
// Pebble batch as the batch it appends, so a crash never separates a batch
// from the applied index and state that go with it.
//
// An append writes its 'd' and 'b' entries, and any 't' entry, in one Pebble
// batch; retention deletes 'd', 'b' and 't' ranges and sets 'm' in one Pebble
// batch. A crash therefore never leaves a batch without its index entries or
// the reverse. On the first Store.Log for an ID, the first and last 'b'
// entries give Start and End ('m' when there are none), the last 't' entry
// and the 'b' entries after it give the running max timestamp.
//
// Large values go to Pebble blob files (value separation), so compactions
// rewrite keys and small handles rather than the batches themselves.
//
// # Durability
//
// By default Append returns once the batch is in Pebble's fsynced write-ahead
// log. Appends to all logs share fsyncs (group commit): each appender hands
// its batch to Pebble under its log's mutex, which fixes the batch's place in
// the write-ahead log, then waits for the sync outside the mutex while
// others queue behind it. End, the high watermark readers see, moves only
// after a sync, so a reader never sees a record a crash could take back.
// With Options.NoSync, Append returns before the sync and End moves at once.
//
// ApplyAt, AppendRaw and Reset never wait for a sync, whatever the options:
// their caller keeps the durable copy (the raft log) and calls Sync when it
// needs the log's own copy durable, before raft may discard its entries.
// A store whose logs are all written that way can do without a write-ahead
// log (Options.NoWAL): every write is then copied once less, and reaches
// the disk with the next memtable flush, which Pebble makes in write order,
// so after a crash each log holds a prefix of its writes, with the applied
// index and state that go with them. Sync then flushes; Drop and Close flush
// too, since nothing replays them. Such a store also flushes on its own
// every few MiB written (a checkpoint, Options.CheckpointBytes). Durable
// tells the owner which applied index a crash keeps: the one from before
// the newest sync or checkpoint began. The owner drops its copy up to
// there, and replays the rest from it after a crash.
//
// # Concurrency
//
// Store and Log methods are safe for concurrent use. Appends to one log are
// ordered by its mutex; appends to different logs run in parallel. Reads take
// no log lock: they read End, open a Pebble iterator and then read Start, so
// the iterator holds every batch between the two. Wait returns a channel
// closed when End next moves, for long-poll reads.
//
// Lock order, outermost first; no method takes them in another order:
//
//	Store.mu (read by every operation, write by Close)
//	Store.logsMu
//	Log.retainMu (retention, Drop and Reset)
//	Log.mu (appends)
//	Log.endMu (Start, End, sizes, Wait)
//
// A Store runs one goroutine, the retention loop, which Close stops and waits
// for. Only logs opened with Store.Log since Open are subject to it.
package log
