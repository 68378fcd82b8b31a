package worker

import (
	"context"
	"time"

	"github.com/runnel-dev/runnel/client"
)

// Queue is what a Worker uses of a queue group consumer; *client.Queue is
// one. The worker does not close the queue: its owner does, after Run
// returns, since Close releases the leases of jobs still running.
type Queue interface {
	// Next blocks until a record is leased or ctx ends.
	Next(ctx context.Context) (*client.Delivery, error)
	// Ack settles d as done.
	Ack(ctx context.Context, d *client.Delivery) error
	// Nack hands d back, to be delivered again after delay.
	Nack(ctx context.Context, d *client.Delivery, delay time.Duration) error
	// Extend moves d's lease to now + by; client.ErrLeaseLost when the
	// lease has expired and the record moved on.
	Extend(ctx context.Context, d *client.Delivery, by time.Duration) error
	// Reject writes dl to the dead-letter topic and settles d for good.
	Reject(ctx context.Context, d *client.Delivery, dl client.DeadLetter) error
}

var _ Queue = (*client.Queue)(nil)

// visibilityQueue is a Queue that says how long it leases each delivery;
// *client.Queue is one. Options.Visibility defaults to it.
type visibilityQueue interface {
	Visibility() time.Duration
}

var _ visibilityQueue = (*client.Queue)(nil)

// Producer writes records; *client.Client is one. The worker uses it for
// the results topic.
type Producer interface {
	ProduceSync(ctx context.Context, recs ...*client.Record) error
}

// topicEnsurer is a Producer that can create the results topic;
// *client.Client is one.
type topicEnsurer interface {
	EnsureTopic(ctx context.Context, topic string, partitions, replicas int) (client.TopicInfo, error)
}

var _ topicEnsurer = (*client.Client)(nil)

// Delivery is a leased record, client.Delivery.
type Delivery = client.Delivery

// maxNackDelay is the longest delay client.Queue takes in a Nack; a longer
// RetryAfter waits this long.
const maxNackDelay = 12 * time.Hour
