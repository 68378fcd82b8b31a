package partition_test

import (
	"testing"

	"github.com/runnel-dev/runnel/partition"
)

// TestLeaderReady checks that only the leader reports ready, and that a
// new leader does so only once its log holds every batch acknowledged
// before its election.
func TestLeaderReady(t *testing.T) {
	c := newCluster(t, 3, func(*partition.ReplicaConfig) {})
	l := c.leader()
	waitFor(t, "the leader to be ready", func() bool { return l.r.LeaderReady() })
	var end int64
	for range 20 {
		end = mustAppend(t, l.r, batchOf("x")) + 1
	}
	for _, f := range c.followers(l) {
		if f.r.LeaderReady() {
			t.Fatal("a follower reports ready")
		}
	}
	o := c.followers(l)[0]
	if err := l.r.TransferLeadershipTo(server(o)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new leader to be ready", func() bool { return o.r.LeaderReady() })
	if got := o.log.End(); got < end {
		t.Fatalf("new leader ready with end %d, before the %d acknowledged", got, end)
	}
	if l.r.LeaderReady() {
		t.Fatal("the former leader still reports ready")
	}
}
