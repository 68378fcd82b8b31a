package worker

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/client/job"
)

// Job is one run of a job, as a handler gets it.
//
// A record whose value decodes as a job (package job) fills the embedded
// job.Job. Any other record still runs: DecodeError says why it is not a
// job, Name and Command are empty, Payload is the record's value as it is
// (not necessarily JSON) and ID is "<topic>/<partition>/<offset>".
//
// Attempt, MaxAttempts and TimeoutMS hold the values in force for this run:
// Attempt counts the job's deliveries in the queue group on top of the
// attempt it was published with, and MaxAttempts and TimeoutMS are the
// worker's defaults where the job leaves them 0.
type Job struct {
	job.Job
	// Delivery is the leased record the job came in.
	Delivery *Delivery
	// DecodeError is nil when the record's value is a job, else why not.
	DecodeError error

	// ExitCode, when a handler sets it, goes into the run's result and
	// dead letter (Exec sets it).
	ExitCode *int
	// Output, when a handler sets it, goes into the run's result and dead
	// letter; only its last OutputLimit bytes are kept (Exec sets it).
	Output string

	d    *Delivery // the delivery the worker settles and extends
	orig job.Job   // the job as published, for the dead letter
	due  time.Time // when the record became due, for the dequeue age
}

// OutputLimit is how many bytes of a run's output (the end of it) go into
// its result and dead letter.
const OutputLimit = 4 << 10

// newJob decodes d into the job a handler gets, with the defaults of opts
// filled in.
func newJob(d *Delivery, opts *Options) *Job {
	view := *d
	j := &Job{Delivery: &view, d: d}
	decoded, err := job.Decode(d.Value)
	if err != nil {
		j.DecodeError = err
		decoded = job.Job{
			ID:      fmt.Sprintf("%s/%d/%d", d.Topic, d.Partition, d.Offset),
			Payload: json.RawMessage(d.Value),
			Attempt: 1,
		}
	}
	j.orig = decoded
	j.Job = decoded
	j.Attempt = decoded.Attempt - 1 + d.Attempt
	if j.MaxAttempts == 0 {
		j.MaxAttempts = opts.MaxAttempts
	}
	if j.TimeoutMS == 0 {
		j.TimeoutMS = opts.Timeout.Milliseconds()
	}
	j.due = d.Timestamp
	if j.ScheduledAt.After(j.due) {
		j.due = j.ScheduledAt
	}
	for _, h := range d.Headers {
		if h.Key == client.DeliverAtHeader {
			if t, ok := parseDeliverAt(string(h.Value)); ok && t.After(j.due) {
				j.due = t
			}
		}
	}
	return j
}

// parseDeliverAt parses a deliver-at header: RFC 3339 or unix milliseconds.
func parseDeliverAt(s string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(ms), true
	}
	return time.Time{}, false
}

// deadLetterJob returns the job as published, for a dead letter: its
// Attempt is the last one run, and the payload of a record that is not a
// job is made JSON (a string) when it is not already.
func (j *Job) deadLetterJob(attempt int) job.Job {
	dj := j.orig
	dj.Attempt = attempt
	if len(dj.Payload) > 0 && !json.Valid(dj.Payload) {
		s, _ := json.Marshal(string(dj.Payload))
		dj.Payload = s
	}
	return dj
}

// tail returns the last n bytes of s, from the start of a UTF-8
// character.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return string(trimPartialRune([]byte(s[len(s)-n:])))
}

// trimPartialRune drops the continuation bytes at the front of b that a cut
// left of a UTF-8 character.
func trimPartialRune(b []byte) []byte {
	for i := 0; i < utf8.UTFMax-1 && len(b) > 0 && !utf8.RuneStart(b[0]); i++ {
		b = b[1:]
	}
	return b
}
