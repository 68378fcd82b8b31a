// Command runnel is the one runnel binary: a broker (serve), a local cluster
// (dev) and the client commands (topic, produce, consume, ...).
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := rootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "runnel:", err)
		os.Exit(1)
	}
}

// rootCmd builds the command tree.
func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "runnel",
		Short:         "runnel is a durable, replicated log broker with work queues on top",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCmd(), devCmd(), benchCmd())
	addClientCommands(root)
	return root
}
