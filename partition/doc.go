// Package partition is one partition of a topic as the broker sees it: the
// place produce requests are admitted, bounded, ordered and acknowledged, and
// fetches read from below the high watermark.
//
// A Partition is a partition on a single node: Append goes straight to its
// log.Log. A Replica is one member of the partition's raft group
// (hashicorp/raft): Append on the leader proposes the batch, and a state
// machine on every replica appends each committed batch to its log, so the
// log's End is the committed high watermark on every replica. Both return a
// Pending from Append and serve Read, Start, End, Wait and OffsetForTime the
// same way, and both check idempotent producers and message ids by the same
// rules and state (producers.go; see Replica); a Replica also reports
// leadership (see Replica and errors.go).
//
// # Replicated log
//
// A raft entry is a type byte (1: record batch) and the batch as the
// producer encoded it; the entry's Extensions carry the proposing replica's
// token (see waiters.go). The state machine (fsm.go) gives a batch the log's
// end as its base offset when it applies it, the same on every replica, and
// writes its raft index and the producer state in the same Pebble batch
// (log.Log.ApplyAt), without waiting for fsync: the raft log is the durable
// copy. After a restart raft replays its log and the state machine skips
// what the log already holds. Raft does not restore a snapshot on start
// (NoSnapshotRestoreOnStart): the log has its data.
//
// Snapshots (snapshot.go) are a small header: applied index, log bounds,
// producer state. Taking one does not sync the log's store: raft drops its
// own entries only up to the log's Durable index (raftLogStore), which its
// store's checkpoints move up every few MiB, and a replica that restarts
// with its log behind its newest snapshot replays the entries in between
// from the raft log before raft starts (fsm.replay). Snapshots are taken
// often, so that raft's entries go while they are still in its store's
// memtable and each batch reaches the disk as a file once per node, in the
// partition log, besides the raft store's write-ahead log. The batches
// are streamed from the live log only when a follower needs the snapshot;
// the follower saves the stream in full and replaces its log with it.
//
// # One node
//
// A Partition checks a batch of an idempotent producer, or one with
// message ids, under one lock, appends it and records it, and writes the
// producer state and id window as the log's state in the same Pebble batch
// as the data (log.Log.AppendAsyncState), so a crash keeps both or
// neither. It loads the state from the log on first use. Where a Replica
// orders producers for eviction by raft index, a Partition uses a counter
// that goes on from the largest stored.
//
// # Queue groups
//
// Both also hold the partition's queue groups (queues.go): work-queue
// leases over the records, kept by consumergroup.Queue. On a Replica each
// lease, settle, reset or delete is a raft entry (type 3) whose data the
// leader stamps with its clock's time; the state machine decides what a
// lease gets from the group's state, that time and the log up to its end,
// the same on every replica, and writes the changed records' state as the
// log's state keys 'Q' (a group's header) and 'R' (an unsettled record) in
// the same Pebble batch as the applied index. Snapshots carry those keys
// with the producer state. On a Partition the same state is written with a
// sync before the answer. Records that retention removed before a group
// reached them are skipped; as retention runs on each replica's own clock,
// such a record may count as skipped on one replica and leased on another.
//
// # Concurrency
//
// Every method of Partition and Replica is safe for concurrent use. Append
// orders batches in the order of its calls: callers that need one stream's
// batches kept in order call Append from one goroutine and wait for the
// returned Pending elsewhere.
//
// A Partition's Append takes its dedupe lock (partition_dedupe.go) for a
// batch with a producer id or message ids, and the log's locks under it;
// its queue lock is never held with it.
//
// A Replica runs one goroutine of its own (watch: leadership and terms)
// besides raft's; Close stops both and waits for them. Its locks, outermost
// first: closeMu (Append against Close), propMu (proposal order), then
// waiters.mu and leaderMu, which are never held together; the state machine
// runs on raft's goroutine and takes only waiters.mu and the log's locks.
package partition
