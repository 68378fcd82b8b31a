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
// for, until DeliveryTimeout; others fail the records at once. There is no
// idempotent producer yet, so a batch whose outcome was unknown may be
// written twice when retried.
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
