package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/runnel-dev/runnel/client"
)

func topicReassignCmd() *cobra.Command {
	var (
		f         clientFlags
		partition int
		replicas  string
		noWait    bool
	)
	cmd := &cobra.Command{
		Use:   "reassign NAME --partition P --replicas ID,ID,...",
		Short: "Move a partition to other nodes, or change how many replicas it has",
		Long: `Set the nodes that hold partition P of topic NAME; the first is its preferred
leader. The partition's leader moves the data while writes go on: new replicas
join and catch up before they vote, then the others leave and drop their copy.
Naming fewer or more nodes than now changes the partition's replication factor.
The command waits until the move is done, unless --no-wait; Ctrl-C stops
waiting, not the move.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.checkFormat("table", "json"); err != nil {
				return err
			}
			if !cmd.Flags().Changed("partition") {
				return fmt.Errorf("--partition is required: the partition to move, as in --partition 0")
			}
			if partition < 0 {
				return fmt.Errorf("--partition %d: partitions are numbered from 0", partition)
			}
			rs, err := parseNodeIDs(replicas)
			if err != nil {
				return err
			}
			c, err := f.newClient(cmd.Context())
			if err != nil {
				return explain(err)
			}
			defer c.Close()
			topic, p := args[0], int32(partition)
			_, move, err := c.ReassignPartition(cmd.Context(), topic, p, rs)
			if err != nil {
				return explain(err)
			}
			errw := cmd.ErrOrStderr()
			if move == nil {
				fmt.Fprintf(errw, "%s/%d already has replicas %s; nothing to move, node %d is its preferred leader\n", topic, p, ids(rs), rs[0])
			} else {
				fmt.Fprintf(errw, "moving %s/%d from %s to %s\n", topic, p, ids(move.Members), ids(rs))
				if noWait {
					fmt.Fprintln(errw, "follow it with: runnel cluster info")
					return nil
				}
				last := ""
				err := follow(cmd.Context(), c, func(pl client.Placement) bool {
					m, ok := pl.FindMove(topic, p)
					if !ok {
						return true
					}
					if now := ids(m.Members); now != last {
						fmt.Fprintf(errw, "%s/%d: raft group %s\n", topic, p, now)
						last = now
					}
					return false
				})
				if err != nil {
					return err
				}
				fmt.Fprintf(errw, "%s/%d moved to %s\n", topic, p, ids(rs))
			}
			pi, err := settledPartition(cmd.Context(), c, topic, p, rs, noWait)
			if err != nil {
				return err
			}
			if f.format == "json" {
				return writeJSON(cmd.OutOrStdout(), partitionOut{pi.Partition, pi.Leader, pi.Replicas, pi.StartOffset, pi.EndOffset})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PARTITION\tLEADER\tREPLICAS")
			fmt.Fprintf(tw, "%d\t%s\t%s\n", pi.Partition, nodeOrNone(pi.Leader), ids(pi.Replicas))
			return tw.Flush()
		},
	}
	f.addBrokersFlag(cmd)
	f.addFormatFlag(cmd, "table", "json")
	cmd.Flags().IntVarP(&partition, "partition", "p", 0, "the partition to move")
	cmd.Flags().StringVarP(&replicas, "replicas", "r", "", "node ids to hold the partition, the preferred leader first, as in 2,3,4")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the new replicas are recorded")
	return cmd
}

// settledPartition describes partition p of topic once the node asked
// shows the replicas want and its preferred replica leads, which the leader
// hands over to after a move, or after ten seconds (or at once with now)
// as it is. A node whose copy of the cluster state lags can still show the
// old replicas for a moment.
func settledPartition(ctx context.Context, c *client.Client, topic string, p int32, want []int32, now bool) (client.PartitionInfo, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		t, err := c.DescribeTopic(ctx, topic)
		if err != nil {
			return client.PartitionInfo{}, explain(err)
		}
		i := slices.IndexFunc(t.Partitions, func(pi client.PartitionInfo) bool { return pi.Partition == p })
		if i < 0 {
			return client.PartitionInfo{}, fmt.Errorf("topic %s has no partition %d any more", topic, p)
		}
		pi := t.Partitions[i]
		settled := slices.Equal(pi.Replicas, want) && len(pi.Replicas) > 0 && pi.Leader == pi.Replicas[0]
		if now || settled || time.Now().After(deadline) {
			return pi, nil
		}
		select {
		case <-ctx.Done():
			return pi, nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// parseNodeIDs parses --replicas: "2,3,4".
func parseNodeIDs(s string) ([]int32, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("--replicas is required: the node ids to hold the partition, as in --replicas 2,3,4")
	}
	var out []int32
	for _, part := range strings.Split(s, ",") {
		id, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || id <= 0 {
			return nil, fmt.Errorf("--replicas %q: %q is not a node id; use positive integers separated by commas, as in 2,3,4", s, part)
		}
		if slices.Contains(out, int32(id)) {
			return nil, fmt.Errorf("--replicas %q: node %d appears twice; a node holds one replica of a partition", s, id)
		}
		out = append(out, int32(id))
	}
	return out, nil
}
