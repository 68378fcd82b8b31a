// Package pipeline runs event-driven stages over runnel topics: each stage
// consumes its input topics in a consumer group, turns every input record
// into zero or more output records, and produces them. The five classic
// shapes are ready-made Funcs: Copy (one stream to several topics),
// Filter, Split (each record to exactly one of several topics), Shard (by
// key to one of N topics) and Merge (several inputs to one topic, by
// running a stage over several inputs).
//
// # Delivery
//
// A stage is at-least-once: it commits an input offset only after every
// output of that input, and of every input before it, has been acked by
// the broker (flushed, every promise called without an error). The
// producer's acks decide what acked means: keep the default, client.AcksAll
// (quorum-committed, fsynced); with client.AcksNone nothing is confirmed
// and the guarantee is gone. A stage that stops, crashes or loses a
// partition to another member leaves the inputs since its last commit to
// be read again, and their outputs are produced again.
//
// Every output carries a message id (header runnel-msg-id, replacing one
// copied from its input) derived from the stage's group, the input's
// topic, partition and offset, and the output's index among that input's
// outputs. The same input always gives the same ids, so a replayed output
// is a duplicate the broker can recognize: the partition's message id
// window drops a batch whose ids were all written within the window (2
// minutes of record timestamps by default), on a single node as on a
// cluster. A batch that mixes new ids and written ones is written whole, so
// replays are dropped exactly only when each output travels in its own
// batch: option Unbatched, with a producer of the stage's own (option
// Producer). With batching, only the outputs whose batch happened to be all
// replays are dropped; the others are written again, each with the same
// message id as its first copy, so a consumer that needs exactly once can
// drop repeats by id itself.
//
// A replay older than the window is written again.
//
// # Commits
//
// Offsets are committed after CommitRecords inputs or CommitInterval
// since the last commit, checked as inputs arrive, and when Run returns
// because its context ended. While no input arrives the offsets of the
// last inputs stay uncommitted (their outputs are sent anyway, within the
// producer's Linger); they are committed with the next input or at stop.
//
// # Concurrency
//
// Run processes one input at a time, on the goroutine that calls it; the
// Func is never called concurrently by one Run. To scale a stage out, run
// more Runs with the same group (in one process or several): the group
// spreads the input partitions over them.
package pipeline
