package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/runnel-dev/runnel/client"
)

func groupCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "group",
		Short: "List, describe, seek and delete consumer groups and queue groups",
		Long: `Consumer groups share the partitions of their topics among their members
(runnel consume --group G, or the Go client's JoinGroup) and remember how far
each partition has been read.

Queue groups (runnel worker, or the Go client's Queue) share every record:
each is leased to one consumer at a time and acked, nacked or dead-lettered
one by one. They show with state "queue"; describe lists, per partition, the
offset below which every record is settled, the leases and the delayed
records; seek rewinds or skips them while consumers run.`,
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
			queues, err := c.QueueGroups(cmd.Context(), "")
			if err != nil {
				return explain(err)
			}
			var queueNames []string
			for _, p := range queues {
				if !slices.Contains(queueNames, p.Group) {
					queueNames = append(queueNames, p.Group)
				}
			}
			if f.format == "json" {
				out := make([]map[string]any, 0, len(groups)+len(queueNames))
				for _, g := range groups {
					out = append(out, map[string]any{"group": g.Group, "state": g.State, "members": g.Members, "type": "consumer"})
				}
				for _, name := range queueNames {
					out = append(out, map[string]any{"group": name, "state": "queue", "members": 0, "type": "queue"})
				}
				return writeJSON(cmd.OutOrStdout(), out)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "GROUP\tSTATE\tMEMBERS")
			for _, g := range groups {
				fmt.Fprintf(tw, "%s\t%s\t%d\n", g.Group, g.State, g.Members)
			}
			for _, name := range queueNames {
				fmt.Fprintf(tw, "%s\tqueue\t-\n", name)
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
		Short: "Show a group's members and, per partition, committed offset, end offset and lag (for a queue group: leases and delayed records)",
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
			queue, qerr := c.QueueGroups(cmd.Context(), args[0])
			if errors.Is(err, client.ErrNotFound) && qerr == nil && len(queue) > 0 {
				if f.format == "json" {
					return writeJSON(cmd.OutOrStdout(), queueGroupJSON(args[0], queue))
				}
				return writeQueueTable(cmd.OutOrStdout(), args[0], queue)
			}
			if err != nil {
				return explain(err)
			}
			if f.format == "json" {
				out := consumerGroupJSON(g)
				if len(queue) > 0 {
					out["queue_partitions"] = queueGroupJSON(args[0], queue)["partitions"]
				}
				return writeJSON(cmd.OutOrStdout(), out)
			}
			if err := writeGroupTable(cmd.OutOrStdout(), g); err != nil {
				return err
			}
			if len(queue) > 0 {
				fmt.Fprintln(cmd.OutOrStdout())
				return writeQueueTable(cmd.OutOrStdout(), args[0], queue)
			}
			return nil
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

// queueGroupJSON is describe --format json of a queue group: the consumer
// group's fields, with committed the offset below which every record is
// settled and lag the records not settled yet, and the queue's counts.
func queueGroupJSON(name string, parts []client.QueueGroupPartition) map[string]any {
	out := make([]map[string]any, 0, len(parts))
	for _, p := range parts {
		out = append(out, map[string]any{
			"topic": p.Topic, "partition": p.Partition, "committed": p.Start,
			"end_offset": p.End, "lag": p.Backlog(), "member": nil,
			"next_offset": p.Next, "leased": p.Leased, "delayed": p.Delayed, "ready": p.Ready,
			"blocked": p.Blocked, "max_deliveries": p.MaxDeliveries, "key_ordering": p.KeyOrdering,
		})
	}
	return map[string]any{"group": name, "type": "queue", "state": "queue", "members": []any{}, "partitions": out}
}

func writeQueueTable(w io.Writer, name string, parts []client.QueueGroupPartition) error {
	fmt.Fprintf(w, "queue group %s: %s\n", name, plural(len(parts), "partition"))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tSETTLED\tNEXT\tEND\tBACKLOG\tLEASED\tDELAYED\tREADY\tBLOCKED\tMAX-DELIVERIES\tKEY-ORDERING")
	var total int64
	for _, p := range parts {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%t\n", p.Topic, p.Partition, p.Start, p.Next, p.End,
			p.Backlog(), p.Leased, p.Delayed, p.Ready, p.Blocked, p.MaxDeliveries, p.KeyOrdering)
		total += p.Backlog()
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "total backlog %d\n", total)
	return nil
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
		queue bool
	)
	cmd := &cobra.Command{
		Use:   "seek GROUP --to start|end|OFFSET|@TIME",
		Short: "Move a group's committed offsets, to replay or to skip",
		Long: `Move the committed offsets of GROUP to a position, resolved per partition:
start, end, an OFFSET, @RFC3339 or @-DURATION (such as @-1h). With --topic only
that topic's partitions move (and a group that has read nothing of it yet gets
offsets for it); otherwise every topic the group has offsets for. The group
must have no live members: stop its consumers first.

A queue group (one with queue state, or any group with --queue) moves while
its consumers run: records from the position on are delivered again, those
before it count as settled, and current leases are lost.`,
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
			if !queue {
				parts, err := c.QueueGroups(cmd.Context(), args[0])
				if err != nil {
					return explain(err)
				}
				queue = len(parts) > 0
			}
			if queue {
				if err := c.SeekQueueGroup(cmd.Context(), args[0], topic, pos); err != nil {
					return explain(err)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "queue group %s now starts at %s\n", args[0], pos)
				return nil
			}
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
	cmd.Flags().BoolVar(&queue, "queue", false, "seek a queue group (implied when the group has queue state)")
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
			queue, err := c.QueueGroups(cmd.Context(), args[0])
			if err != nil {
				return explain(err)
			}
			if len(queue) > 0 {
				if err := c.DeleteQueueGroup(cmd.Context(), args[0]); err != nil {
					return explain(err)
				}
			}
			if err := c.DeleteGroup(cmd.Context(), args[0]); err != nil && !(len(queue) > 0 && errors.Is(err, client.ErrNotFound)) {
				return explain(err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "deleted group %s\n", args[0])
			return nil
		},
	}
	f.addBrokersFlag(cmd)
	return cmd
}
