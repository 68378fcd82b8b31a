package broker

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/runnel-dev/runnel/proto/runnelpb"
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
	ackLatency      prometheus.Histogram
	leaderChanges   *prometheus.CounterVec
}

// raftCollector reports the raft state of every group on this node when
// scraped: the controller and the partition replicas it hosts.
type raftCollector struct{ b *Broker }

var (
	raftLeaderDesc  = prometheus.NewDesc("runnel_raft_leader", "1 when this node leads the raft group, else 0.", []string{"group"}, nil)
	raftTermDesc    = prometheus.NewDesc("runnel_raft_term", "Current raft term of the group on this node.", []string{"group"}, nil)
	raftCommitDesc  = prometheus.NewDesc("runnel_raft_commit_index", "Last raft index known committed.", []string{"group"}, nil)
	raftAppliedDesc = prometheus.NewDesc("runnel_raft_applied_index", "Last raft index applied to the state machine.", []string{"group"}, nil)
	raftContactDesc = prometheus.NewDesc("runnel_raft_last_contact_seconds", "Time since a follower last heard from its leader (0 on the leader).", []string{"group"}, nil)
)

func (c raftCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{raftLeaderDesc, raftTermDesc, raftCommitDesc, raftAppliedDesc, raftContactDesc} {
		ch <- d
	}
}

func (c raftCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.b.cluster
	if n == nil {
		return
	}
	groups := append([]*runnelpb.RaftGroupInfo{raftInfo(controllerGroup, n.ctrl.raft)}, n.catalog.groupInfos()...)
	for _, g := range groups {
		leader := 0.0
		if g.State == "Leader" {
			leader = 1
		}
		ch <- prometheus.MustNewConstMetric(raftLeaderDesc, prometheus.GaugeValue, leader, g.Group)
		ch <- prometheus.MustNewConstMetric(raftTermDesc, prometheus.GaugeValue, float64(g.Term), g.Group)
		ch <- prometheus.MustNewConstMetric(raftCommitDesc, prometheus.GaugeValue, float64(g.CommitIndex), g.Group)
		ch <- prometheus.MustNewConstMetric(raftAppliedDesc, prometheus.GaugeValue, float64(g.AppliedIndex), g.Group)
		ch <- prometheus.MustNewConstMetric(raftContactDesc, prometheus.GaugeValue, float64(g.LastContactMs)/1000, g.Group)
	}
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
	m.ackLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "runnel_produce_ack_seconds",
		Help:    "Time from accepting a produce with acks=all to acknowledging it: the fsync on one node, the raft commit in a cluster.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	})
	m.leaderChanges = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "runnel_partition_leader_changes_total", Help: "Leadership changes seen by this node's replicas, by topic.",
	}, []string{"topic"})
	m.reg.MustRegister(m.ackLatency, m.leaderChanges, raftCollector{b: b}, groupCollector{b: b}, queueCollector{b: b})
	m.reg.MustRegister(m.producedRecords, m.producedBytes, m.produceLatency, m.fetchedRecords, m.fetchedBytes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "runnel_log_fsyncs_total", Help: "fsyncs of the write-ahead log.",
		}, func() float64 { return float64(b.store.Stats().Syncs) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "runnel_raft_log_fsyncs_total", Help: "fsyncs of the raft log store shared by this node's raft groups (0 on a single node).",
		}, func() float64 {
			if b.cluster == nil || b.cluster.rafts == nil {
				return 0
			}
			return float64(b.cluster.rafts.Stats().Syncs)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "runnel_disk_free_bytes", Help: "Free space on the disk of the node's data folder, read every second (-1: not read). Below runnel_disk_min_free_bytes, produce is refused.",
		}, func() float64 { return float64(b.disk.freeBytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "runnel_disk_min_free_bytes", Help: "The free space the node keeps on its data folder's disk (--min-free-disk; 0: no floor).",
		}, func() float64 { return float64(b.disk.minFree()) }),
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
