package client

import (
	"context"
	"time"

	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// CommitStreams returns how many commit streams c has opened, and how many
// are open now.
func CommitStreams(c *Client) (opened, open int) {
	c.commits.mu.Lock()
	defer c.commits.mu.Unlock()
	return c.commits.opened, len(c.commits.streams)
}

// CommitVia commits req as CommitOffsets does, asking the broker at addr
// first.
func CommitVia(ctx context.Context, c *Client, addr string, req *runnelpb.CommitOffsetsRequest) error {
	return c.groupsCallAt(ctx, addr, func(ctx context.Context, addr string, gc runnelpb.GroupsClient) error {
		return c.commits.commit(ctx, addr, gc, req)
	})
}

// SetCommitStreamIdle sets how long a commit stream stays open unused, for
// the streams opened until the returned function restores it.
func SetCommitStreamIdle(d time.Duration) (restore func()) {
	commitStreamIdle = d
	return func() { commitStreamIdle = commitStreamIdleDefault }
}
