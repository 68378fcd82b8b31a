// Package raftstore keeps the raft logs and stable stores of all raft
// groups on a node (one per partition, plus the controller's) in one Pebble
// database. Each group is a *Group, which implements hashicorp/raft's
// LogStore and StableStore.
//
// Sharing one database is the point: raft fsyncs every append before it
// acknowledges it, and with one write-ahead log the appends of all groups on
// a node share fsyncs (Pebble's group commit) instead of each group paying
// for its own file's; a node holds a fixed number of files however many
// partitions it hosts; and dropping a partition is two range deletes. The
// benchmarks in bench_test.go (and module walbench, for raft-wal) measure it
// against one raft-boltdb file and one raft-wal per group; bench.md beside
// this file has the figures and the commands.
//
// The Store owns its own Pebble database, apart from package log's: raft
// entries live from append to the next snapshot, records live until
// retention, and the two are tuned and truncated differently.
//
// # On-disk format
//
// Every key starts with a prefix byte and the group id, as a uvarint length
// and its bytes. The length makes the pair self-delimiting, so each group's
// keys of one kind form one contiguous range, and DropGroup is two range
// deletes.
//
//	key                                      value
//	'l' len:uvarint id index:8               entry (below)
//	's' len:uvarint id key                   stable-store value as set
//
// index is big-endian, so a group's entries sort by index and FirstIndex and
// LastIndex are one seek each (done once per group and cached). An entry is
//
//	version:1 type:1 flags:1 term:uvarint
//	[sec:varint nsec:uvarint]       AppendedAt, if flags&1
//	[extLen:uvarint ext]            Extensions, if flags&2
//	data                            the rest of the value
//
// Entries of 1 KiB and more go to Pebble blob files (value separation), so
// compactions move keys and small handles rather than the entries; a blob
// file whose entries were all deleted is removed whole. Uint64 stable-store
// values are 8 big-endian bytes.
//
// # Entry cache
//
// raft reads most entries right after storing them: a leader to replicate
// them to each follower, a follower to apply them. The Store keeps the
// newest entries of all its groups in memory, as StoreLogs was given them,
// up to Options.EntryCacheBytes in all (oldest out first), and GetLog
// answers from there without touching Pebble or copying the entry: a cached
// raft.Log shares its Data with the one stored. DeleteRange, overwrites and
// DropGroup take entries out of the cache before they change the disk. A
// group's last entry, once read from Pebble, is cached again: a leader
// names it in the empty append it sends each follower every CommitTimeout
// while the group is idle, and would otherwise copy it out of Pebble each
// time.
//
// # Durability
//
// StoreLogs writes its entries in one Pebble batch and returns once the
// write-ahead log holding it is fsynced; Set, SetUint64, DeleteRange and
// DropGroup do the same. Options.NoSync, for tests only, skips the waits.
//
// # Missing keys
//
// GetLog returns raft.ErrLogNotFound for an index the group does not hold.
// Get and GetUint64 return ErrKeyNotFound, whose text is "not found": raft
// (api.go, raft.go) recognises a missing stable-store key by that text, as
// it does raft-boltdb's. GetUint64 then returns 0.
//
// # Concurrency
//
// Store and Group methods are safe for concurrent use. Writes to one group
// are ordered by its write mutex, held across the commit; writes to
// different groups run in parallel and share fsyncs. Reads take no group
// lock beyond the brief one on the cached first and last index, so raft's
// replication reads proceed while its main loop waits for an fsync.
//
// Lock order, outermost first; no method takes them in another order:
//
//	Store.mu (read by every operation, write by Close)
//	Store.groupsMu (Group, DropGroup)
//	Group.writeMu (a group's writes, DropGroup)
//	Group.mu (cached first and last index)
//	entryCache.mu (the entry cache; never held with Group.mu)
//
// The Store starts no goroutines of its own; Pebble's are stopped by Close.
package raftstore
