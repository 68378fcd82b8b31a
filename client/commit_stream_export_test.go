package client

// CommitStreams returns how many commit streams c has opened, and how many
// are open now.
func CommitStreams(c *Client) (opened, open int) {
	c.commits.mu.Lock()
	defer c.commits.mu.Unlock()
	return c.commits.opened, len(c.commits.streams)
}
