package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/runnel-dev/runnel/client"
)

func groupCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "group",
		Short: "List, describe, seek and delete consumer groups",
		Long: `Consumer groups share the partitions of their topics among their members
(runnel consume --group G, or the Go client's JoinGroup) and remember how far
each partition has been read.`,
	}
	cmd.AddCommand(groupListCmd(), groupDescribeCmd(), groupSeekCmd(), groupDeleteCmd())
	return cmd
}

func groupListCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the groups with members or committed offsets",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.checkFormat("table", "json"); err != nil {
				return err
			}
			c, err := f.newClient(cmd.Context())
			if err != nil {
				return explain(err)
			}
			defer c.Close()
			groups, err := c.ListGroups(cmd.Context())
			if err != nil {
				return explain(err)
			}
			if f.format == "json" {
				out := make([]map[string]any, 0, len(groups))
				for _, g := range groups {
					out = append(out, map[string]any{"group": g.Group, "state": g.State, "members": g.Members})
				}
				return writeJSON(cmd.OutOrStdout(), out)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "GROUP\tSTATE\tMEMBERS")
			for _, g := range groups {
				fmt.Fprintf(tw, "%s\t%s\t%d\n", g.Group, g.State, g.Members)
			}
			return tw.Flush()
		},
	}
	f.addBrokersFlag(cmd)
	f.addFormatFlag(cmd, "table", "json")
	return cmd
}

func groupDescribeCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "describe GROUP",
		Short: "Show a group's members and, per partition, committed offset, end offset and lag",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.checkFormat("table", "json"); err != nil {
				return err
			}
			c, err := f.newClient(cmd.Context())
			if err != nil {
				return explain(err)
			}
			defer c.Close()
			g, err := c.DescribeGroup(cmd.Context(), args[0])
			if err != nil {
				return explain(err)
			}
			if f.format == "json" {
				return writeJSON(cmd.OutOrStdout(), consumerGroupJSON(g))
			}
			return writeGroupTable(cmd.OutOrStdout(), g)
		},
	}
	f.addBrokersFlag(cmd)
	f.addFormatFlag(cmd, "table", "json")
	return cmd
}

// consumerGroupJSON is describe --format json, as DESIGN.md has it: {"group",
// "members": [...], "partitions": [{"topic", "partition", "committed",
// "end_offset", "lag", "member"}]}; committed is null when nothing is
// committed, member null when no member owns the partition.
func consumerGroupJSON(g client.GroupInfo) map[string]any {
	members := make([]map[string]any, 0, len(g.Members))
	for _, m := range g.Members {
		members = append(members, map[string]any{
			"member": m.MemberID, "client_id": m.ClientID, "topics": m.Topics,
			"assigned": partsJSON(m.Assigned), "revoking": partsJSON(m.Revoking),
		})
	}
	parts := make([]map[string]any, 0, len(g.Partitions))
	for _, p := range g.Partitions {
		var committed, member any
		if p.Committed >= 0 {
			committed = p.Committed
		}
		if p.Member != "" {
			member = p.Member
		}
		parts = append(parts, map[string]any{
			"topic": p.Topic, "partition": p.Partition, "committed": committed,
			"end_offset": p.EndOffset, "lag": p.Lag, "member": member,
		})
	}
	return map[string]any{
		"group": g.Group, "state": g.State, "strategy": g.Strategy, "generation": g.Generation,
		"members": members, "partitions": parts,
	}
}

func partsJSON(ps []client.TopicPartition) []map[string]any {
	out := make([]map[string]any, 0, len(ps))
	for _, p := range ps {
		out = append(out, map[string]any{"topic": p.Topic, "partition": p.Partition})
	}
	return out
}

func writeGroupTable(w io.Writer, g client.GroupInfo) error {
	fmt.Fprintf(w, "group %s: %s, %s", g.Group, g.State, plural(len(g.Members), "member"))
	if g.Strategy != "" {
		fmt.Fprintf(w, ", %s assignment, generation %d", g.Strategy, g.Generation)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tCOMMITTED\tEND\tLAG\tMEMBER")
	var total int64
	for _, p := range g.Partitions {
		committed := "-"
		if p.Committed >= 0 {
			committed = fmt.Sprint(p.Committed)
		}
		member := p.Member
		if member == "" {
			member = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\n", p.Topic, p.Partition, committed, p.EndOffset, p.Lag, member)
		total += p.Lag
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "total lag %d\n", total)
	if len(g.Members) > 0 {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "MEMBER\tCLIENT\tASSIGNED")
		for _, m := range g.Members {
			var as []string
			for _, p := range m.Assigned {
				as = append(as, p.String())
			}
			for _, p := range m.Revoking {
				as = append(as, p.String()+" (revoking)")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", m.MemberID, orDash(m.ClientID), orDash(strings.Join(as, " ")))
		}
		return tw.Flush()
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func groupSeekCmd() *cobra.Command {
	var (
		f     clientFlags
		to    string
		topic string
	)
	cmd := &cobra.Command{
		Use:   "seek GROUP --to start|end|OFFSET|@TIME",
		Short: "Move a group's committed offsets, to replay or to skip",
		Long: `Move the committed offsets of GROUP to a position, resolved per partition:
start, end, an OFFSET, @RFC3339 or @-DURATION (such as @-1h). With --topic only
that topic's partitions move (and a group that has read nothing of it yet gets
offsets for it); otherwise every topic the group has offsets for. The group
must have no live members: stop its consumers first.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return fmt.Errorf("--to is required: start, end, OFFSET, @RFC3339 or @-DURATION")
			}
			pos, err := client.ParsePosition(to)
			if err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			c, err := f.newClient(cmd.Context())
			if err != nil {
				return explain(err)
			}
			defer c.Close()
			if err := c.SeekGroup(cmd.Context(), args[0], topic, pos); err != nil {
				return explain(err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "group %s now starts at %s\n", args[0], pos)
			return nil
		},
	}
	f.addBrokersFlag(cmd)
	cmd.Flags().StringVar(&to, "to", "", "where the group starts reading: start, end, OFFSET, @RFC3339 or @-DURATION")
	cmd.Flags().StringVar(&topic, "topic", "", "move only this topic's partitions")
	return cmd
}

func groupDeleteCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "delete GROUP",
		Short: "Delete a group and its committed offsets",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.newClient(cmd.Context())
			if err != nil {
				return explain(err)
			}
			defer c.Close()
			if err := c.DeleteGroup(cmd.Context(), args[0]); err != nil {
				return explain(err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "deleted group %s\n", args[0])
			return nil
		},
	}
	f.addBrokersFlag(cmd)
	return cmd
}
