package bench

import "context"

// Driver is a system the workloads run against, bound to the topic (or
// the system's equivalent of one) that the run uses, created beforehand.
// Runnel drives runnel through client.Client; peers implement Driver in
// their own module (bench/peers) so that their dependencies stay out of
// this one.
type Driver interface {
	// Produce sends one record with value as its payload, letting the
	// driver choose the partition, and calls done exactly once with the
	// outcome, on any goroutine: nil once the record is acknowledged.
	// Produce may block while the driver's bound on records in flight is
	// reached, until ctx ends. value is shared with other records in
	// flight: the driver must not modify it.
	Produce(ctx context.Context, value []byte, done func(error))
	// Lengths returns how many records each partition holds, indexed by
	// partition.
	Lengths(ctx context.Context) ([]int64, error)
	// Read reads partition's first n records in order and calls fn with
	// each record's value, from one goroutine; the value is fn's to read
	// during the call only. It returns once n records are read, or with
	// an error when ctx ends first. A partition that holds fewer than n
	// records is read as records arrive.
	Read(ctx context.Context, partition int, n int64, fn func(value []byte)) error
}

// GroupReader is a Driver that can read its topic as a consumer group,
// whose members share the partitions.
type GroupReader interface {
	// ReadGroup reads the topic as members members of a new consumer
	// group named group, calling fn with each record's value, from any
	// goroutine, until ctx ends. It returns nil when ctx ended.
	ReadGroup(ctx context.Context, group string, members int, fn func(value []byte)) error
}
