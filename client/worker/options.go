package worker

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Options.
const (
	DefaultMaxAttempts  = 5
	DefaultTimeout      = 30 * time.Minute
	DefaultVisibility   = 30 * time.Second
	DefaultDrainTimeout = 30 * time.Second
)

// settleTimeout bounds one Ack, Nack, Reject or results write; they run
// on after the worker's context ends, so that a drain settles what ran.
const settleTimeout = 30 * time.Second

// Options configure a Worker. The zero value works: every field has a
// default.
type Options struct {
	// Concurrency is how many jobs run at once; default GOMAXPROCS.
	Concurrency int
	// MaxAttempts bounds the runs of a job whose max_attempts is 0;
	// default DefaultMaxAttempts.
	MaxAttempts int
	// Timeout bounds one run of a job whose timeout_ms is 0; default
	// DefaultTimeout.
	Timeout time.Duration
	// Visibility is the queue's lease per delivery (QueueOptions.Visibility).
	// A run still going when half of it is left extends the lease by
	// Visibility. Default: the queue's, when the queue has a Visibility
	// method (*client.Queue has); else DefaultVisibility, the queue's
	// default.
	Visibility time.Duration
	// Backoff is the wait before the next attempt of a failed job (a
	// RetryAfter error overrides it); default ExponentialBackoff of
	// DefaultBackoffBase, DefaultBackoffMax and DefaultBackoffJitter.
	Backoff Backoff
	// DrainTimeout is how long Run lets running jobs finish once its
	// context ends; then their contexts end (cause ErrShutdown) and they go
	// back to the queue when it is closed. Default DefaultDrainTimeout.
	DrainTimeout time.Duration
	// Results, with ResultsTopic, gets a job.Result record for every run,
	// keyed by job ID. Both empty: no results. When Results can create
	// topics (*client.Client can), Run creates ResultsTopic unless it
	// exists, with the broker's default partitions and replicas, and
	// waits until Results knows it before it takes a job.
	Results      Producer
	ResultsTopic string
	// Registerer gets the worker's metrics; nil: not registered. Workers
	// sharing a Registerer share the metrics, labelled by queue.
	Registerer prometheus.Registerer
	// Logger gets a line per failed run and per settle that failed;
	// default slog.Default().
	Logger *slog.Logger
}

// ensureDefaults fills the zero fields of o and checks the rest.
func (o *Options) ensureDefaults() error {
	if o.Concurrency == 0 {
		o.Concurrency = runtime.GOMAXPROCS(0)
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Visibility == 0 {
		o.Visibility = DefaultVisibility
	}
	if o.Backoff == nil {
		o.Backoff = ExponentialBackoff(DefaultBackoffBase, DefaultBackoffMax, DefaultBackoffJitter)
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	switch {
	case o.Concurrency < 0:
		return fmt.Errorf("worker: concurrency %d is negative; use at least 1", o.Concurrency)
	case o.MaxAttempts < 0:
		return fmt.Errorf("worker: max attempts %d is negative; use at least 1", o.MaxAttempts)
	case o.Timeout < 0:
		return fmt.Errorf("worker: timeout %v is negative", o.Timeout)
	case o.Visibility < 0:
		return fmt.Errorf("worker: visibility %v is negative", o.Visibility)
	case o.DrainTimeout < 0:
		return fmt.Errorf("worker: drain timeout %v is negative", o.DrainTimeout)
	case (o.Results == nil) != (o.ResultsTopic == ""):
		return errors.New("worker: Results and ResultsTopic go together; set both for a results topic, or neither")
	}
	return nil
}
