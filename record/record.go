package record

import "time"

// Header is one record header. Headers keep their order; keys may repeat.
type Header struct {
	Key   string
	Value []byte
}

// Record is one record. Timestamp is in milliseconds since the Unix epoch.
// A decoded Record's Key, Value and header values alias the batch it came
// from.
type Record struct {
	Key       []byte
	Value     []byte
	Headers   []Header
	Timestamp int64
	// Offset is the record's offset; set when decoding, ignored when building.
	Offset int64
}

// Time returns the record's timestamp as a time.Time.
func (r *Record) Time() time.Time { return time.UnixMilli(r.Timestamp) }

// Header returns the value of the first header named key, and whether there
// is one.
func (r *Record) Header(key string) ([]byte, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return h.Value, true
		}
	}
	return nil, false
}
