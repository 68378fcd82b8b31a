package broker

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/runnel-dev/runnel/record"
)

// metrics are the broker's Prometheus metrics, in a registry of its own so
// several brokers can live in one process.
type metrics struct {
	reg             *prometheus.Registry
	producedRecords *prometheus.CounterVec
	producedBytes   *prometheus.CounterVec
	produceLatency  prometheus.Histogram
	fetchedRecords  *prometheus.CounterVec
	fetchedBytes    *prometheus.CounterVec
}

func newMetrics(b *Broker) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		producedRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runnel_produce_records_total", Help: "Records appended, by topic.",
		}, []string{"topic"}),
		producedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runnel_produce_bytes_total", Help: "Record batch bytes appended, by topic.",
		}, []string{"topic"}),
		produceLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "runnel_produce_append_seconds",
			Help:    "Time to order a batch in its partition (not counting the wait for acks).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		fetchedRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runnel_fetch_records_total", Help: "Records sent to consumers, by topic.",
		}, []string{"topic"}),
		fetchedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runnel_fetch_bytes_total", Help: "Record batch bytes sent to consumers, by topic.",
		}, []string{"topic"}),
	}
	m.reg.MustRegister(m.producedRecords, m.producedBytes, m.produceLatency, m.fetchedRecords, m.fetchedBytes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "runnel_log_fsyncs_total", Help: "fsyncs of the write-ahead log.",
		}, func() float64 { return float64(b.store.Stats().Syncs) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "runnel_topics", Help: "Topics on this node.",
		}, func() float64 { return float64(len(b.topics.list())) }),
	)
	return m
}

func (m *metrics) produced(topic string, b record.Batch, start time.Time) {
	m.producedRecords.WithLabelValues(topic).Add(float64(b.Count()))
	m.producedBytes.WithLabelValues(topic).Add(float64(len(b)))
	m.produceLatency.Observe(time.Since(start).Seconds())
}

func (m *metrics) fetched(topic string, batches []record.Batch) {
	var n, size int
	for _, b := range batches {
		n += b.Count()
		size += len(b)
	}
	m.fetchedRecords.WithLabelValues(topic).Add(float64(n))
	m.fetchedBytes.WithLabelValues(topic).Add(float64(size))
}
