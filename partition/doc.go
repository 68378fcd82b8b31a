// Package partition is one partition of a topic as the broker sees it: the
// place produce requests are admitted, bounded, ordered and acknowledged, and
// fetches read from below the high watermark.
//
// On a single node a Partition appends straight to its log.Log; replication
// puts a raft group between Append and the log without changing this API.
//
// Concurrency: every method is safe for concurrent use. Append orders batches
// in the order its calls take the log's lock; callers that need one stream's
// batches kept in order call Append from one goroutine and wait for the
// returned Pending elsewhere.
package partition
