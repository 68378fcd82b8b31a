package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// DeadLetterID returns the message id of the dead letter of a record: the
// broker writes a dead letter with a given id once, however often the
// queue retries it.
func DeadLetterID(group, topic string, partition int32, offset int64) string {
	return fmt.Sprintf("dlq/%s/%s/%d/%d", group, topic, partition, offset)
}

// deadLetter writes d's dead letter to the queue's dead-letter topic,
// creating the topic when it does not exist.
func (q *Queue) deadLetter(ctx context.Context, d *Delivery, dl DeadLetter) error {
	headers := make([]Header, 0, len(d.Headers)+len(dl.Headers)+7)
	for _, h := range d.Headers {
		// The original's dedupe id and deliver-at time would hold the
		// dead letter back or drop it.
		if h.Key != MsgIDHeader && h.Key != DeliverAtHeader {
			headers = append(headers, h)
		}
	}
	headers = append(headers, dl.Headers...)
	headers = append(headers,
		Header{Key: DLQReasonHeader, Value: []byte(dl.Reason)},
		Header{Key: DLQTopicHeader, Value: []byte(d.Topic)},
		Header{Key: DLQPartitionHeader, Value: []byte(strconv.Itoa(int(d.Partition)))},
		Header{Key: DLQOffsetHeader, Value: []byte(strconv.FormatInt(d.Offset, 10))},
		Header{Key: DLQGroupHeader, Value: []byte(q.group)},
		Header{Key: DLQAttemptsHeader, Value: []byte(strconv.Itoa(d.Attempt))},
		Header{Key: MsgIDHeader, Value: []byte(DeadLetterID(q.group, d.Topic, d.Partition, d.Offset))},
	)
	value := dl.Value
	if value == nil {
		value = d.Value
	}
	// The key decides the partition, and the dedupe window is a
	// partition's: a record without a key is keyed by its id, so a retry
	// lands where the first try did.
	key := d.Key
	if key == nil {
		key = []byte(DeadLetterID(q.group, d.Topic, d.Partition, d.Offset))
	}
	rec := &Record{Topic: q.opts.DeadLetterTopic, Key: key, Value: value, Headers: headers}
	err := q.c.ProduceSync(ctx, rec)
	if errors.Is(err, ErrNotFound) {
		if err := q.ensureDLQ(ctx); err != nil {
			return err
		}
		rec = &Record{Topic: q.opts.DeadLetterTopic, Key: key, Value: value, Headers: headers}
		err = q.c.ProduceSync(ctx, rec)
	}
	if err != nil {
		return fmt.Errorf("queue group %q: dead-letter %s/%d@%d to %q: %w", q.group, d.Topic, d.Partition, d.Offset, q.opts.DeadLetterTopic, err)
	}
	return nil
}

// ensureDLQ creates the dead-letter topic with the topic's partition
// count, unless it exists, and waits until the client knows it.
func (q *Queue) ensureDLQ(ctx context.Context) error {
	q.dlqOnce.Lock()
	defer q.dlqOnce.Unlock()
	if q.dlqMade {
		return nil
	}
	if _, err := q.c.EnsureTopic(ctx, q.opts.DeadLetterTopic, len(q.parts), 0); err != nil {
		return fmt.Errorf("queue group %q: dead-letter topic %q: %w", q.group, q.opts.DeadLetterTopic, err)
	}
	q.dlqMade = true
	return nil
}
