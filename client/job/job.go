package job

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Version is the schema version of Job values this package writes and
// reads.
const Version = 1

// MsgIDHeader is the record header that carries a job's ID. It is the
// broker's dedupe header (partition.MsgIDHeader): within the dedupe window a
// partition writes each ID once.
const MsgIDHeader = "runnel-msg-id"

// Job is the value of a job record.
type Job struct {
	// Version is the schema version, Version when written by this package.
	Version int `json:"v"`
	// ID names one run of the job and is its dedupe key; for a cron fire it
	// is FireID(Name, ScheduledAt).
	ID string `json:"id"`
	// Name is the job's name; it is also the record's key.
	Name string `json:"job"`
	// Command is a shell command for workers that execute commands.
	Command string `json:"command,omitempty"`
	// Payload is JSON for workers with a Go handler.
	Payload json.RawMessage `json:"payload,omitempty"`
	// ScheduledAt is when the job was due.
	ScheduledAt time.Time `json:"scheduled_at"`
	// PublishedAt is when the job was published.
	PublishedAt time.Time `json:"published_at"`
	// Attempt is 1 when the job is published.
	Attempt int `json:"attempt"`
	// MaxAttempts bounds the runs of the job; 0 means the worker's default.
	MaxAttempts int `json:"max_attempts"`
	// TimeoutMS bounds one run in milliseconds; 0 means the worker's default.
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
}

// FireID returns the ID of the run of job name scheduled at t:
// "<name>@<t in UTC, RFC 3339 with nanoseconds>".
func FireID(name string, t time.Time) string {
	return name + "@" + t.UTC().Format(time.RFC3339Nano)
}

// Timeout returns TimeoutMS as a duration.
func (j Job) Timeout() time.Duration { return time.Duration(j.TimeoutMS) * time.Millisecond }

// Validate reports the first thing wrong with j, or nil.
func (j Job) Validate() error {
	switch {
	case j.Version == 0:
		return fmt.Errorf("job: no schema version (field \"v\"); this runnel writes and reads version %d", Version)
	case j.Version != Version:
		return fmt.Errorf("job: schema version %d is not %d, the one this runnel reads; upgrade the reader or publish version %d", j.Version, Version, Version)
	case j.ID == "":
		return fmt.Errorf("job: empty id (field \"id\"); give each run an id, e.g. job.FireID(name, scheduledAt)")
	case strings.TrimSpace(j.Name) == "":
		return fmt.Errorf("job %q: empty name (field \"job\")", j.ID)
	case j.Attempt < 1:
		return fmt.Errorf("job %q: attempt %d; attempts count from 1 (field \"attempt\")", j.ID, j.Attempt)
	case j.MaxAttempts < 0:
		return fmt.Errorf("job %q: max_attempts %d is negative; use 0 for the worker's default", j.ID, j.MaxAttempts)
	case j.TimeoutMS < 0:
		return fmt.Errorf("job %q: timeout_ms %d is negative; use 0 for the worker's default", j.ID, j.TimeoutMS)
	case len(j.Payload) > 0 && !json.Valid(j.Payload):
		return fmt.Errorf("job %q: payload is not valid JSON", j.ID)
	}
	return nil
}

// Encode returns j as JSON, after checking it with Validate.
func (j Job) Encode() ([]byte, error) {
	if err := j.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(j)
}

// Decode parses a job record's value. Fields it does not know are ignored,
// so that newer writers can add some; the error names what is wrong.
func Decode(b []byte) (Job, error) {
	var j Job
	if err := json.Unmarshal(b, &j); err != nil {
		return Job{}, fmt.Errorf("job: value is not a job object (%s): %w", preview(b), err)
	}
	if bytes.Equal(j.Payload, []byte("null")) {
		j.Payload = nil
	}
	if err := j.Validate(); err != nil {
		return Job{}, err
	}
	return j, nil
}

// preview returns the start of b for an error message.
func preview(b []byte) string {
	const max = 40
	if len(b) > max {
		return fmt.Sprintf("%q...", b[:max])
	}
	return fmt.Sprintf("%q", b)
}
