package broker

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// queueCollector reports, when scraped, the queue groups of the partitions
// this node leads.
type queueCollector struct{ b *Broker }

var (
	queueLabels       = []string{"group", "topic", "partition"}
	queueBacklogDesc  = prometheus.NewDesc("runnel_queue_backlog_records", "Records of a partition a queue group has not settled (from its settled offset to the end).", queueLabels, nil)
	queueLeasedDesc   = prometheus.NewDesc("runnel_queue_leased_records", "Records leased to consumers of a queue group and not expired.", queueLabels, nil)
	queueDelayedDesc  = prometheus.NewDesc("runnel_queue_delayed_records", "Records of a queue group waiting for a nack's delay or a deliver-at time.", queueLabels, nil)
	queueMaxDelivDesc = prometheus.NewDesc("runnel_queue_max_deliveries", "The largest delivery count of a record a queue group has not settled.", queueLabels, nil)
)

func (c queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{queueBacklogDesc, queueLeasedDesc, queueDelayedDesc, queueMaxDelivDesc} {
		ch <- d
	}
}

func (c queueCollector) Collect(ch chan<- prometheus.Metric) {
	if c.b.topics == nil {
		return
	}
	for _, t := range c.b.topics.list() {
		for p, r := range t.parts {
			q, ok := r.(queueReplica)
			if !ok {
				continue
			}
			if rep, ok := r.(leaderReplica); ok && !rep.IsLeader() {
				continue // the leader reports it
			}
			part := strconv.Itoa(p)
			end := r.End()
			groups, err := q.QueueGroups("")
			if err != nil {
				// Describe reports it to the caller; one bad partition
				// does not fail the whole scrape.
				c.b.logger.Warn("queue metrics: queue groups unreadable", "topic", t.meta.Name, "partition", p, "err", err)
				continue
			}
			for _, g := range groups {
				ch <- prometheus.MustNewConstMetric(queueBacklogDesc, prometheus.GaugeValue, float64(max(end-g.Start, 0)), g.Group, t.meta.Name, part)
				ch <- prometheus.MustNewConstMetric(queueLeasedDesc, prometheus.GaugeValue, float64(g.Leased), g.Group, t.meta.Name, part)
				ch <- prometheus.MustNewConstMetric(queueDelayedDesc, prometheus.GaugeValue, float64(g.Delayed), g.Group, t.meta.Name, part)
				ch <- prometheus.MustNewConstMetric(queueMaxDelivDesc, prometheus.GaugeValue, float64(g.MaxDeliveries), g.Group, t.meta.Name, part)
			}
		}
	}
}
