package job

import (
	"encoding/json"
	"fmt"
	"time"
)

// Outcomes of one run of a job, the values of Result.Outcome.
const (
	// OutcomeSuccess: the run succeeded and the job is done.
	OutcomeSuccess = "success"
	// OutcomeRetry: the run failed and the job will run again.
	OutcomeRetry = "retry"
	// OutcomeFailed: the run failed for good (a permanent failure).
	OutcomeFailed = "failed"
	// OutcomeDead: the job went to the dead-letter topic.
	OutcomeDead = "dead"
)

// Result is the value of a results-topic record, written by a worker after
// each run of a job.
type Result struct {
	ID         string    `json:"id"`
	Name       string    `json:"job"`
	Attempt    int       `json:"attempt"`
	Outcome    string    `json:"outcome"`
	ExitCode   *int      `json:"exit_code,omitempty"`
	DurationMS int64     `json:"duration_ms"`
	Output     string    `json:"output,omitempty"` // capped by the worker
	Error      string    `json:"error,omitempty"`
	FinishedAt time.Time `json:"finished_at"`
}

// Encode returns r as JSON.
func (r Result) Encode() ([]byte, error) { return json.Marshal(r) }

// DecodeResult parses a results-topic record's value.
func DecodeResult(b []byte) (Result, error) {
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return Result{}, fmt.Errorf("job: value is not a result object (%s): %w", preview(b), err)
	}
	switch r.Outcome {
	case OutcomeSuccess, OutcomeRetry, OutcomeFailed, OutcomeDead:
	default:
		return Result{}, fmt.Errorf("job: result %q has outcome %q; want %s, %s, %s or %s",
			r.ID, r.Outcome, OutcomeSuccess, OutcomeRetry, OutcomeFailed, OutcomeDead)
	}
	if r.ID == "" {
		return Result{}, fmt.Errorf("job: result has an empty id (field \"id\")")
	}
	return r, nil
}

// DeadLetter is the value of a dead-letter record written by a worker.
type DeadLetter struct {
	Job       Job       `json:"job"`
	Reason    string    `json:"reason"`
	ExitCode  *int      `json:"exit_code"`
	Attempts  int       `json:"attempts"`
	Output    string    `json:"output,omitempty"`
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	At        time.Time `json:"dead_at"`
}

// Encode returns d as JSON.
func (d DeadLetter) Encode() ([]byte, error) { return json.Marshal(d) }

// DecodeDeadLetter parses a dead-letter record's value. The job inside is
// not validated: a record that could not be decoded as a job can still be
// dead-lettered.
func DecodeDeadLetter(b []byte) (DeadLetter, error) {
	var d DeadLetter
	if err := json.Unmarshal(b, &d); err != nil {
		return DeadLetter{}, fmt.Errorf("job: value is not a dead-letter object (%s): %w", preview(b), err)
	}
	return d, nil
}
