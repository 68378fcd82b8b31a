package worker

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes counted by runnel_jobs_total{outcome}: the result outcomes of
// package job, plus the two ways a run ends without one of its own.
const (
	outcomeLeaseLost   = "lease_lost"  // the queue took the lease back mid-run
	outcomeInterrupted = "interrupted" // cut short by a drain; handed back to run again
)

// metrics are a worker's Prometheus metrics, labelled by queue (the topic
// a job came from).
type metrics struct {
	runtime  *prometheus.HistogramVec
	age      *prometheus.HistogramVec
	outcomes *prometheus.CounterVec
	inFlight *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		runtime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "runnel_job_runtime_seconds",
			Help:    "How long each run of a job took, by queue (topic).",
			Buckets: prometheus.ExponentialBucketsRange(0.001, 3600, 20),
		}, []string{"queue"}),
		age: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "runnel_job_dequeue_age_seconds",
			Help: "Time from when a job was due (record timestamp, scheduled time or deliver-at, the latest) " +
				"to the start of its first attempt, by queue (topic).",
			Buckets: prometheus.ExponentialBucketsRange(0.001, 86400, 20),
		}, []string{"queue"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runnel_jobs_total",
			Help: "Runs of jobs by queue (topic) and outcome: success, retry, failed (permanent failure, dead-lettered), " +
				"dead (attempts used up, dead-lettered), lease_lost, interrupted.",
		}, []string{"queue", "outcome"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "runnel_jobs_in_flight",
			Help: "Jobs running now, by queue (topic).",
		}, []string{"queue"}),
	}
	if reg == nil {
		return m, nil
	}
	// Workers sharing a registry share the collectors.
	var err error
	m.runtime, err = register(reg, m.runtime)
	if err == nil {
		m.age, err = register(reg, m.age)
	}
	if err == nil {
		m.outcomes, err = register(reg, m.outcomes)
	}
	if err == nil {
		m.inFlight, err = register(reg, m.inFlight)
	}
	return m, err
}

// register registers c with reg, or returns the collector of the same
// name registered before.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if prev, ok := are.ExistingCollector.(C); ok {
				return prev, nil
			}
		}
		return c, err
	}
	return c, nil
}
