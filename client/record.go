package client

import (
	"time"

	"github.com/runnel-dev/runnel/record"
)

// Header is one record header. Headers keep their order; keys may repeat.
type Header = record.Header

// Record is one record, produced or consumed.
type Record struct {
	// Topic is the record's topic.
	Topic string
	// Partition is set by the partitioner when producing (read from here
	// only by ManualPartitioner) and when consuming.
	Partition int32
	// Key is optional; records with the same key go to the same partition
	// with the default KeyPartitioner.
	Key []byte
	// Value is the record's payload.
	Value []byte
	// Headers are ordered key/value pairs.
	Headers []Header
	// Timestamp is the producer's time; a zero Timestamp is set to the time
	// of Produce. It keeps millisecond precision.
	Timestamp time.Time
	// Offset is set when the record is acked (-1 with AcksNone) and when it
	// is consumed.
	Offset int64
}

// Clone returns a deep copy of r, whose bytes do not alias r's. Records
// yielded by Consume are valid only until the next iteration; Clone keeps
// one.
func (r *Record) Clone() *Record {
	c := *r
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Value)
	}
	buf := make([]byte, 0, n)
	c.Key, buf = cloneInto(buf, r.Key)
	c.Value, buf = cloneInto(buf, r.Value)
	if r.Headers != nil {
		c.Headers = make([]Header, len(r.Headers))
		for i, h := range r.Headers {
			c.Headers[i].Key = h.Key
			c.Headers[i].Value, buf = cloneInto(buf, h.Value)
		}
	}
	return &c
}

// cloneInto appends b to buf and returns the copy, keeping nil as nil.
func cloneInto(buf, b []byte) ([]byte, []byte) {
	if b == nil {
		return nil, buf
	}
	start := len(buf)
	buf = append(buf, b...)
	return buf[start:len(buf):len(buf)], buf
}

// encodable returns r in the form record.Builder takes, without copying.
func (r *Record) encodable() record.Record {
	return record.Record{Key: r.Key, Value: r.Value, Headers: r.Headers, Timestamp: r.Timestamp.UnixMilli()}
}
