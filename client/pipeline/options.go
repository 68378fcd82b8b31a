package pipeline

import (
	"time"

	"github.com/runnel-dev/runnel/client"
)

// Option configures Run.
type Option func(*config)

type config struct {
	producer       *client.Client
	commitRecords  int
	commitInterval time.Duration
	groupOpts      []client.GroupOption
	unbatched      bool
}

func newConfig(c *client.Client, opts []Option) config {
	cfg := config{producer: c, commitRecords: 1000, commitInterval: time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.commitRecords < 1 {
		cfg.commitRecords = 1
	}
	return cfg
}

// Producer sets the client outputs are produced with; the default is the
// client that consumes.
func Producer(p *client.Client) Option { return func(c *config) { c.producer = p } }

// CommitRecords sets after how many inputs offsets are committed at the
// latest; the default is 1000. 1 commits after every input.
func CommitRecords(n int) Option { return func(c *config) { c.commitRecords = n } }

// CommitInterval sets how long after the last commit an arriving input
// triggers a commit; the default is one second.
func CommitInterval(d time.Duration) Option { return func(c *config) { c.commitInterval = d } }

// GroupOptions passes options to JoinGroup, such as client.StartAt or
// client.SessionTimeout. The stage always adds client.ManualCommit.
func GroupOptions(opts ...client.GroupOption) Option {
	return func(c *config) { c.groupOpts = append(c.groupOpts, opts...) }
}

// Unbatched produces each output on its own and waits for its ack before
// producing the next, so that each travels in its own batch and a cluster's
// dedupe window drops every replayed output (see the package
// documentation). It costs a round trip per output, and the producer
// client must not be producing other records to the same partitions
// meanwhile (give the stage its own with Producer).
func Unbatched() Option { return func(c *config) { c.unbatched = true } }
