package worker

import (
	"context"
	"time"

	"github.com/runnel-dev/runnel/client"
)

// Queue is what a Worker uses of a queue group consumer (client.Queue):
// lease the next record, then settle it once. The worker does not close
// the queue; its owner does, after Run returns.
type Queue interface {
	// Next blocks until a record is leased or ctx ends.
	Next(ctx context.Context) (*Delivery, error)
	// Ack settles d as done.
	Ack(ctx context.Context, d *Delivery) error
	// Nack hands d back, to be delivered again after delay.
	Nack(ctx context.Context, d *Delivery, delay time.Duration) error
	// Extend moves d's lease to now + by; ErrLeaseLost (the queue's) when
	// the lease has expired and the record moved on.
	Extend(ctx context.Context, d *Delivery, by time.Duration) error
	// Reject writes dl to the dead-letter topic and settles d for good.
	Reject(ctx context.Context, d *Delivery, dl QueueDeadLetter) error
}

// Producer writes records; *client.Client is one. The worker uses it for
// the results topic.
type Producer interface {
	ProduceSync(ctx context.Context, recs ...*client.Record) error
}

// Delivery is one leased record, as client.Queue hands it out.
type Delivery struct {
	client.Record
	// Attempt is 1 on the record's first delivery in the group.
	Attempt int
	// LeaseUntil is when the lease ends unless extended.
	LeaseUntil time.Time
}

// QueueDeadLetter is what Queue.Reject writes to the dead-letter topic.
type QueueDeadLetter struct {
	Reason  string
	Value   []byte // nil: the original value
	Headers []client.Header
}

// errQueueLeaseLost is the queue's error for a lease that has moved on.
var errQueueLeaseLost = ErrLeaseLost
