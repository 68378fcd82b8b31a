package cron

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Results of a fire, the values of the result label of
// runnel_cron_publishes_total.
const (
	// ResultOK: the job was published (or was a duplicate of one another
	// instance published) and acknowledged by all in-sync replicas.
	ResultOK = "ok"
	// ResultError: publishing failed; the fire is lost unless another
	// instance published it or a catchup job's next start republishes it.
	ResultError = "error"
	// ResultSkipped: the fire time was missed and the job's policy dropped
	// it.
	ResultSkipped = "skipped"
)

type metrics struct {
	jobs       prometheus.Gauge
	publishes  *prometheus.CounterVec
	lag        prometheus.Histogram
	publish    prometheus.Histogram
	nextFire   *prometheus.GaugeVec
	lastFire   *prometheus.GaugeVec
	collectors []prometheus.Collector
}

// lagBuckets resolve the fire-time lag from a millisecond to a minute.
var lagBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

func newMetrics() *metrics {
	m := &metrics{
		jobs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "runnel_cron_jobs", Help: "Jobs loaded from the job file.",
		}),
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runnel_cron_publishes_total", Help: "Fires of each job by result: ok, error, or skipped (missed and dropped by the job's policy).",
		}, []string{"job", "result"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "runnel_cron_schedule_lag_seconds",
			Help:    "Time from a job's scheduled time to its publish starting, for fires made on time (not missed ones caught up).",
			Buckets: lagBuckets,
		}),
		publish: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "runnel_cron_publish_seconds",
			Help:    "Time from a publish starting to its acknowledgement by the broker.",
			Buckets: lagBuckets,
		}),
		nextFire: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "runnel_cron_next_fire_timestamp_seconds", Help: "Unix time of each job's next scheduled fire.",
		}, []string{"job"}),
		lastFire: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "runnel_cron_last_publish_timestamp_seconds", Help: "Unix time of the scheduled fire each job last published successfully.",
		}, []string{"job"}),
	}
	m.collectors = []prometheus.Collector{m.jobs, m.publishes, m.lag, m.publish, m.nextFire, m.lastFire}
	return m
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range m.collectors {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
