package broker

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// groupCollector reports, when scraped, each group's committed offset and
// lag on the partitions this node leads: every node knows the committed
// offsets (a single node keeps them, a cluster replicates them through the
// controller), and the leader knows the end offset, so across the nodes
// every partition of every group is reported once.
type groupCollector struct{ b *Broker }

var (
	groupLagDesc = prometheus.NewDesc("runnel_group_lag",
		"Records between a group's committed offset and the partition's end offset (high watermark).",
		[]string{"group", "topic", "partition"}, nil)
	groupCommittedDesc = prometheus.NewDesc("runnel_group_committed_offset",
		"The next offset a group will read in a partition.", []string{"group", "topic", "partition"}, nil)
)

func (c groupCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- groupLagDesc
	ch <- groupCommittedDesc
}

func (c groupCollector) Collect(ch chan<- prometheus.Metric) {
	store := c.b.offsetsView()
	if store == nil {
		return
	}
	for _, g := range store.groups() {
		for p, off := range store.offsets(g) {
			_, r, err := c.b.topics.partition(p.Topic, p.Partition)
			if err != nil {
				continue // not here, or not led here
			}
			part := strconv.Itoa(int(p.Partition))
			ch <- prometheus.MustNewConstMetric(groupCommittedDesc, prometheus.GaugeValue, float64(off), g, p.Topic, part)
			ch <- prometheus.MustNewConstMetric(groupLagDesc, prometheus.GaugeValue, float64(max(r.End()-off, 0)), g, p.Topic, part)
		}
	}
}
