package main

import "github.com/spf13/cobra"

// addClientCommands adds the commands that talk to a running broker:
// topic, produce, consume, group and cluster. Each takes --brokers (env RUNNEL_BROKERS).
// Records go to stdout, status to stderr; a failure comes back as an error
// whose text is one line a person can act on.
func addClientCommands(root *cobra.Command) {
	root.AddCommand(topicCmd(), produceCmd(), consumeCmd(), groupCmd(), clusterCmd(), cronCmd(), workerCmd())
}
