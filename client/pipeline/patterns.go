package pipeline

import (
	"context"
	"fmt"

	"github.com/runnel-dev/runnel/client"
)

// Copy returns a Func that copies each record, with its key, value and
// headers, to every topic in to.
func Copy(to ...string) Func {
	return func(_ context.Context, in *client.Record) ([]*client.Record, error) {
		outs := make([]*client.Record, len(to))
		for i, t := range to {
			outs[i] = forward(in, t)
		}
		return outs, nil
	}
}

// Filter returns a Func that copies to topic to the records keep accepts
// and drops the others.
func Filter(to string, keep func(*client.Record) bool) Func {
	return func(_ context.Context, in *client.Record) ([]*client.Record, error) {
		if !keep(in) {
			return nil, nil
		}
		return []*client.Record{forward(in, to)}, nil
	}
}

// Route is one output of Split: records Match accepts go to topic To.
type Route struct {
	To    string
	Match func(*client.Record) bool
}

// Split returns a Func that sends each record to exactly one topic: that of
// the first route that matches it. A record no route matches is an error
// wrapping ErrUnroutable, never a silent drop; end the routes with one
// whose Match is nil (it matches everything) to send the rest somewhere.
func Split(routes ...Route) Func {
	return func(_ context.Context, in *client.Record) ([]*client.Record, error) {
		for _, r := range routes {
			if r.Match == nil || r.Match(in) {
				return []*client.Record{forward(in, r.To)}, nil
			}
		}
		return nil, fmt.Errorf("key %q: %w", in.Key, ErrUnroutable)
	}
}

// Shard returns a Func that sends each record to one of the topics in to,
// chosen by the murmur2 hash of key(record) as Kafka's partitioner does, so
// that records with equal keys go to the same topic. A nil key function
// uses the record's key. to must not be empty.
func Shard(key func(*client.Record) []byte, to ...string) Func {
	return func(_ context.Context, in *client.Record) ([]*client.Record, error) {
		k := in.Key
		if key != nil {
			k = key(in)
		}
		return []*client.Record{forward(in, to[client.KeyPartition(k, len(to))])}, nil
	}
}

// Merge returns a Func that copies every record to topic to. Run it over
// several inputs to merge them into one stream.
func Merge(to string) Func { return Copy(to) }

// forward returns a record for topic to with in's key, value and headers;
// its timestamp is the time it is produced, which the dedupe window counts
// in.
func forward(in *client.Record, to string) *client.Record {
	return &client.Record{Topic: to, Key: in.Key, Value: in.Value, Headers: in.Headers}
}
