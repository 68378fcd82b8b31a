// Package raftmux puts a node's gRPC API and the traffic of all its raft
// groups on one TCP listener, so that a node has one address.
//
// Split divides a listener in two. A connection that opens with a fixed
// magic goes to the Raft listener, the magic consumed; any other (gRPC's
// HTTP/2 preface, say) goes to the Apps listener untouched. On unix Split
// peeks at the first bytes (MSG_PEEK), so an app gets the *net.TCPConn it
// would have accepted; elsewhere, or when the first bytes arrive in pieces,
// Split reads them and the connection replays them. A Mux, made over the Raft listener, reads which raft group a connection is
// for and hands it to that group's Layer, a raft.StreamLayer. NewTransport
// makes a raft transport over a Layer, and NewLogger adapts a *slog.Logger to
// the hclog.Logger raft logs to.
//
// The transport is raft's NetworkTransport with three changes. Its Close
// waits for the heartbeat handlers under way. Its AppendEntries holds a
// call to a peer that refuses connections for up to a second, trying again
// every 50 ms, so that raft's backoff, which counts failed calls, grows
// with the time the peer is down; Interrupt ends such holds. Its pipelines
// queue the decoded answers for raft, so that a send never waits for good
// once raft has stopped reading them (hashicorp/raft issue 612).
//
// # Wire header
//
// A Layer's Dial writes, before any raft byte:
//
//	+----------------------------+----------------+--------------+
//	| magic "RNLRAFT\x01" (8 B)  | uvarint length | group name   |
//	+----------------------------+----------------+--------------+
//	 read by Split                 read by Mux: 1 to 1024 bytes
//
// The last magic byte is the version of this header. There is no reply: raft
// traffic follows the header at once, and a node with no Layer for the group
// closes the connection, which the dialing raft sees as a failed RPC and
// retries. Nothing past the header is read by this package, so no raft byte
// is buffered or replayed.
//
// Each side reads its part of a new connection under a deadline (5 s), in a
// goroutine of its own, so a client that connects and sends nothing never
// holds up others; a connection that fails is closed and logged at debug
// level.
//
// # Concurrency
//
// Every method is safe for concurrent use, and Close methods may be called
// more than once. A Splitter and a Mux each own one accept goroutine plus one
// goroutine per connection whose prefix is being read; their Close closes the
// listener under them and those connections, and waits for the goroutines.
// A Layer owns no goroutine; a transport's pipeline owns one, which its
// Close ends. Closing a Layer or one of a Splitter's
// listeners never closes the listener they share. No lock is held while
// another is taken.
//
// Shut a node down top first: raft groups (call the transport's Interrupt,
// then Raft.Shutdown().Error(), which closes the transport and Layer;
// Shutdown alone does not), then the Mux, then
// the gRPC server and the Splitter. A transport whose Layer fails Accept
// before the transport is closed logs an error every second.
package raftmux
