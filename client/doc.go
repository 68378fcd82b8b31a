// Package client is runnel's Go client: a producer, a consumer and the admin
// calls, over gRPC to a runnel cluster or to a broker embedded in the same
// program.
//
//	c, err := client.New(ctx, client.Brokers("127.0.0.1:7070"))
//	...
//	defer c.Close()
//	err = c.ProduceSync(ctx, &client.Record{Topic: "events", Value: []byte("hello")})
//	for r, err := range c.Consume(ctx, "events", 0, client.Start()) { ... }
//
// With an embedded broker, pass its in-process dialer and the same API
// works without a socket:
//
//	c, err := client.New(ctx, client.Brokers(b.Addr()), client.Dialer(b.DialContext))
//
// # Producing
//
// Produce is asynchronous: it encodes the record into the open batch of its
// partition and returns; a promise is called once the record is acked or
// has failed. Batches are sent when full (MaxBatchBytes), after Linger, or
// on Flush, over one ProduceStream per broker with at most MaxInFlight
// batches per partition in flight. Records of a partition are acked in the
// order they were produced. Retriable failures (no leader, not the leader,
// over a bound, unknown outcome, a lost connection) are retried with
// exponential backoff and full jitter, or after the delay the broker asks
// for, until DeliveryTimeout; others fail the records at once.
//
// Batches carry the client's producer id and sequence numbers, so a retried
// batch is written once; one the partition wrote before and no longer
// remembers the offset of (ErrDuplicateSequence) counts as acknowledged,
// with Offset -1. The broker answers a batch that has not committed within
// its request timeout (RequestTimeout, or what is left of DeliveryTimeout
// when that is less) with ErrUnknownOutcome, and the batch is sent again.
//
// When a partition's leader moves, the producer follows: a NOT_LEADER
// answer names the new leader, which is tried at once; a leader that cannot
// be reached is avoided for a second and the partition's batches go to
// another replica, whose answer names the leader raft elected (fresher than
// the metadata, which learns it from the controller) or says there is none
// yet. Connections to a broker that is down are tried again at most every
// second, so one that restarts is reached again soon.
//
// Partitions are chosen by the Partitioner (KeyPartitioner by default,
// which agrees with Kafka's for keyed records). Record.Partition is an
// output except with ManualPartitioner, which reads it; this differs from a
// "-1 means choose" convention so that the zero Record is usable.
//
// # Consuming
//
// Consume returns an iterator over one partition. It streams batches with
// credit-based flow control and decodes them in place: a yielded record
// aliases the client's buffer until the next iteration (Record.Clone
// copies). The iterator waits at the end of the log for new records.
//
// # Queue groups
//
// Queue (queue.go) consumes a topic as a work queue: every record is leased
// to one consumer of the group for a visibility timeout and settled one by
// one: Ack, Nack (deliver again after a delay), Extend, or Reject (to the
// dead-letter topic, "<topic>.dlq" by default, with message id
// "dlq/<group>/<topic>/<partition>/<offset>" so that a retry writes it
// once). A consumer leases from every partition, so any
// number of consumers get work; a partition with records leases up to the
// free share of Prefetch, an idle one long-polls without holding any, and
// settles of a partition that wait together go in one call. Records leased
// ahead and never returned by Next are released on Close without counting
// a delivery. A delivery past MaxDeliveries is dead-lettered without
// reaching Next. The leases live in the partition's raft group, so they
// survive a change of leader; QueueGroups, SeekQueueGroup and
// DeleteQueueGroup administer them.
//
// # Errors
//
// Broker failures are *Error values that match one sentinel each
// (ErrNotFound, ErrInvalidArgument, ...) with errors.Is; *OffsetOutOfRangeError,
// *NotLeaderError and *ConnectError carry data for errors.As. Their messages
// are the broker's, written for a person.
//
// # Concurrency
//
// A Client is safe for concurrent use. It owns its goroutines: one metadata
// loop, one sink per broker it produces to and one reader per produce
// stream; Close ends and waits for all of them. Promises run on the reader
// goroutines and must not block. Lock order inside: producer.mu, then
// topicProducer.mu, then partProducer.mu, then metadata.mu, which is
// innermost; sink, stream and free-list locks are taken alone.
package client
