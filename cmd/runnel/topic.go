package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/runnel-dev/runnel/client"
)

func topicCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "topic",
		Short: "Create, list, describe, alter, reassign and delete topics",
	}
	cmd.AddCommand(topicCreateCmd(), topicListCmd(), topicDescribeCmd(), topicAlterCmd(), topicReassignCmd(), topicDeleteCmd())
	return cmd
}

func topicCreateCmd() *cobra.Command {
	var (
		f          clientFlags
		partitions int
		replicas   int
		configs    []string
	)
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a topic",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.checkFormat("table", "json"); err != nil {
				return err
			}
			if partitions < 1 {
				return fmt.Errorf("--partitions %d: a topic needs 1 or more", partitions)
			}
			if replicas < 0 {
				return fmt.Errorf("--replicas %d: a partition needs 1 or more (0 for the cluster default)", replicas)
			}
			cfg, err := parseKV("config", configs)
			if err != nil {
				return err
			}
			c, err := f.newClient(cmd.Context())
			if err != nil {
				return explain(err)
			}
			defer c.Close()
			t, err := c.CreateTopic(cmd.Context(), args[0], partitions, replicas, cfg)
			if err != nil {
				return explain(err)
			}
			if f.format == "json" {
				return writeJSON(cmd.OutOrStdout(), topicJSON(t))
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "created topic %s with %s\n", t.Name, plural(len(t.Partitions), "partition"))
			return nil
		},
	}
	f.addBrokersFlag(cmd)
	f.addFormatFlag(cmd, "table", "json")
	cmd.Flags().IntVarP(&partitions, "partitions", "p", 1, "number of partitions")
	cmd.Flags().IntVarP(&replicas, "replicas", "r", 0, "replicas per partition (0: 3, or every node when there are fewer)")
	cmd.Flags().StringArrayVar(&configs, "config", nil, "topic config KEY=VALUE (repeatable), such as retention.ms=3600000")
	return cmd
}

func topicListCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List topics",
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
			topics, err := c.ListTopics(cmd.Context())
			if err != nil {
				return explain(err)
			}
			out := cmd.OutOrStdout()
			if f.format == "json" {
				type entry struct {
					Name       string `json:"name"`
					Partitions int    `json:"partitions"`
				}
				list := make([]entry, 0, len(topics))
				for _, t := range topics {
					list = append(list, entry{t.Name, len(t.Partitions)})
				}
				return writeJSON(out, list)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tPARTITIONS")
			for _, t := range topics {
				fmt.Fprintf(tw, "%s\t%d\n", t.Name, len(t.Partitions))
			}
			return tw.Flush()
		},
	}
	f.addBrokersFlag(cmd)
	f.addFormatFlag(cmd, "table", "json")
	return cmd
}

func topicDescribeCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a topic's partitions, leaders, offsets and configs",
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
			t, err := c.DescribeTopic(cmd.Context(), args[0])
			if err != nil {
				return explain(err)
			}
			// The answering node may be a follower, whose offsets trail;
			// a partition without a leader keeps them.
			ctx, cancel := context.WithTimeout(cmd.Context(), describeOffsetsTimeout)
			c.LeaderOffsets(ctx, &t)
			cancel()
			if f.format == "json" {
				return writeJSON(cmd.OutOrStdout(), topicJSON(t))
			}
			return writeTopicTable(cmd.OutOrStdout(), t)
		},
	}
	f.addBrokersFlag(cmd)
	f.addFormatFlag(cmd, "table", "json")
	return cmd
}

// describeOffsetsTimeout bounds how long topic describe asks partition
// leaders for their offsets.
const describeOffsetsTimeout = 3 * time.Second

func topicAlterCmd() *cobra.Command {
	var (
		f      clientFlags
		set    []string
		delete []string
	)
	cmd := &cobra.Command{
		Use:   "alter NAME",
		Short: "Set or reset a topic's configs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.checkFormat("table", "json"); err != nil {
				return err
			}
			cfg, err := parseKV("config", set)
			if err != nil {
				return err
			}
			if len(cfg) == 0 && len(delete) == 0 {
				return fmt.Errorf("nothing to alter; give --config KEY=VALUE or --delete-config KEY")
			}
			c, err := f.newClient(cmd.Context())
			if err != nil {
				return explain(err)
			}
			defer c.Close()
			t, err := c.AlterTopicConfigs(cmd.Context(), args[0], cfg, delete)
			if err != nil {
				return explain(err)
			}
			if f.format == "json" {
				return writeJSON(cmd.OutOrStdout(), topicJSON(t))
			}
			return writeTopicTable(cmd.OutOrStdout(), t)
		},
	}
	f.addBrokersFlag(cmd)
	f.addFormatFlag(cmd, "table", "json")
	cmd.Flags().StringArrayVar(&set, "config", nil, "config to set, KEY=VALUE (repeatable)")
	cmd.Flags().StringArrayVar(&delete, "delete-config", nil, "config to return to its default, KEY (repeatable)")
	return cmd
}

func topicDeleteCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a topic and all its records",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.newClient(cmd.Context())
			if err != nil {
				return explain(err)
			}
			defer c.Close()
			if err := c.DeleteTopic(cmd.Context(), args[0]); err != nil {
				return explain(err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "deleted topic %s\n", args[0])
			return nil
		},
	}
	f.addBrokersFlag(cmd)
	return cmd
}

// topicOut is the JSON form of a topic, as documented in DESIGN.md.
type topicOut struct {
	Name       string            `json:"name"`
	Partitions []partitionOut    `json:"partitions"`
	Configs    map[string]string `json:"configs"`
}

type partitionOut struct {
	Partition   int32   `json:"partition"`
	Leader      int32   `json:"leader"`
	Replicas    []int32 `json:"replicas"`
	StartOffset int64   `json:"start_offset"`
	EndOffset   int64   `json:"end_offset"`
}

func topicJSON(t client.TopicInfo) topicOut {
	out := topicOut{Name: t.Name, Partitions: []partitionOut{}, Configs: t.Configs}
	for _, p := range t.Partitions {
		replicas := p.Replicas
		if replicas == nil {
			replicas = []int32{}
		}
		out.Partitions = append(out.Partitions, partitionOut{p.Partition, p.Leader, replicas, p.StartOffset, p.EndOffset})
	}
	if out.Configs == nil {
		out.Configs = map[string]string{}
	}
	return out
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func writeTopicTable(w io.Writer, t client.TopicInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "topic %s, %s\n", t.Name, plural(len(t.Partitions), "partition"))
	for _, k := range slices.Sorted(maps.Keys(t.Configs)) {
		fmt.Fprintf(tw, "config\t%s=%s\n", k, t.Configs[k])
	}
	fmt.Fprintln(tw, "PARTITION\tLEADER\tREPLICAS\tSTART\tEND")
	for _, p := range t.Partitions {
		replicas := make([]string, len(p.Replicas))
		for i, r := range p.Replicas {
			replicas[i] = fmt.Sprint(r)
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%d\t%d\n", p.Partition, p.Leader, strings.Join(replicas, ","), p.StartOffset, p.EndOffset)
	}
	return tw.Flush()
}

// plural returns "1 partition" or "3 partitions".
func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
