// Package broker is a runnel node. It owns the node's Pebble storage
// (through package log), keeps the topic registry, hosts the partitions and
// serves the gRPC API (runnel.v1.Broker, runnel.v1.Groups, grpc.health.v1
// and reflection) on a
// TCP socket, in process (DialContext), or both, plus an optional HTTP server
// with /metrics, /livez, /readyz and JSON admin views.
//
// Embed a node in a Go program with Open; `runnel serve` does the same.
//
// Errors: every error that leaves the broker goes through status.go, which
// maps it to the gRPC code in DESIGN.md's table with an ErrorInfo (domain
// "runnel.dev") naming the reason, so clients can act on it.
//
// Concurrency: a Broker is safe for concurrent use. The topic registry is
// guarded by one RWMutex, held only to look up or change topics, never
// across I/O on a partition. Close stops new requests, ends long-polls,
// waits for requests in flight and then closes the storage.
//
// Reads in a cluster: Fetch and ListOffsets, like Produce, are served only
// by the partition's raft leader, whose copy is current; a follower's trails
// it by up to a commit timeout. A follower answers NOT_LEADER naming the
// leader, and a fetch stream ends with it when its node stops leading; the
// client follows the hint. (Metadata and the topic views still show each
// node's own start and end offsets.)
//
// On a single node, topics are kept in DATA/topics.json, rewritten atomically
// (temporary file, fsync, rename) on every change.
//
// Consumer groups (groups*.go): one coordinator per cluster runs the groups'
// membership and assignment (package consumergroup) — the node itself on a
// single node, the controller leader in a cluster, where a goroutine
// (watchGroups) starts and stops it as the leadership moves, and its run
// goroutine expires silent members. Each member's GroupSession stream has a
// goroutine reading the member's heartbeats. Committed offsets go to
// DATA/offsets.log (appended, one fsync per batch of commits, compacted into
// DATA/offsets.json) on a single node, and into the controller state,
// proposed in batches, in a cluster.
package broker
