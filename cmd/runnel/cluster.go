package main

import (
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/runnel-dev/runnel/client"
)

func clusterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Show the cluster, add and remove nodes",
	}
	cmd.AddCommand(clusterInfoCmd(), clusterAddCmd(), clusterRemoveCmd())
	return cmd
}

type clusterJSON struct {
	Node       int32       `json:"node"`
	Controller int32       `json:"controller"`
	Nodes      []nodeJSON  `json:"nodes"`
	Groups     []groupJSON `json:"groups"`
}

type nodeJSON struct {
	ID   int32  `json:"id"`
	Addr string `json:"addr"`
	HTTP string `json:"http,omitempty"`
}

type groupJSON struct {
	Group         string `json:"group"`
	State         string `json:"state"`
	Leader        int32  `json:"leader"`
	Term          uint64 `json:"term"`
	CommitIndex   uint64 `json:"commit_index"`
	AppliedIndex  uint64 `json:"applied_index"`
	LastContactMs int64  `json:"last_contact_ms"`
}

func clusterInfoCmd() *cobra.Command {
	var (
		f    clientFlags
		node string
	)
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Nodes, controller leader, and the raft groups of one node",
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
			st, err := c.ClusterInfo(cmd.Context(), node)
			if err != nil {
				return explain(err)
			}
			out := clusterJSON{Node: st.Node, Controller: st.Controller, Nodes: []nodeJSON{}, Groups: []groupJSON{}}
			for _, n := range st.Nodes {
				out.Nodes = append(out.Nodes, nodeJSON{n.ID, n.Addr, n.HTTP})
			}
			for _, g := range st.Groups {
				out.Groups = append(out.Groups, groupJSON{g.Group, g.State, g.Leader, g.Term, g.CommitIndex, g.AppliedIndex, g.LastContact.Milliseconds()})
			}
			if f.format == "json" {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "answered by node %d; controller leader: %s\n\n", st.Node, nodeOrNone(st.Controller))
			fmt.Fprintln(w, "NODE\tADDR\tHTTP")
			for _, n := range out.Nodes {
				fmt.Fprintf(w, "%d\t%s\t%s\n", n.ID, n.Addr, n.HTTP)
			}
			if len(out.Groups) > 0 {
				fmt.Fprintf(w, "\nGROUP (on node %d)\tSTATE\tLEADER\tTERM\tCOMMIT\tAPPLIED\tLAST CONTACT\n", st.Node)
				for _, g := range out.Groups {
					fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%dms\n", g.Group, g.State, nodeOrNone(g.Leader), g.Term, g.CommitIndex, g.AppliedIndex, g.LastContactMs)
				}
			}
			return w.Flush()
		},
	}
	f.addBrokersFlag(cmd)
	f.addFormatFlag(cmd, "table", "json")
	cmd.Flags().StringVar(&node, "node", "", "ask the node at this HOST:PORT (default: the first broker that answers)")
	return cmd
}

func nodeOrNone(id int32) string {
	if id == 0 {
		return "none"
	}
	return strconv.Itoa(int(id))
}

func clusterAddCmd() *cobra.Command {
	var (
		f    clientFlags
		http string
	)
	cmd := &cobra.Command{
		Use:   "add ID HOST:PORT",
		Short: "Add a node (start it first with runnel serve --id ID --cluster ...)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.Atoi(args[0])
			if err != nil || id <= 0 {
				return fmt.Errorf("node id %q: use a positive integer", args[0])
			}
			c, err := f.newClient(cmd.Context())
			if err != nil {
				return explain(err)
			}
			defer c.Close()
			if err := c.AddNode(cmd.Context(), client.Node{ID: int32(id), Addr: args[1], HTTP: http}); err != nil {
				return explain(err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "added node %d at %s\n", id, args[1])
			return nil
		},
	}
	f.addBrokersFlag(cmd)
	cmd.Flags().StringVar(&http, "http", "", "the node's HTTP address, if it serves one")
	return cmd
}

func clusterRemoveCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a node that holds no partition replicas",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.Atoi(args[0])
			if err != nil || id <= 0 {
				return fmt.Errorf("node id %q: use a positive integer", args[0])
			}
			c, err := f.newClient(cmd.Context())
			if err != nil {
				return explain(err)
			}
			defer c.Close()
			if err := c.RemoveNode(cmd.Context(), int32(id)); err != nil {
				return explain(err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "removed node %d\n", id)
			return nil
		},
	}
	f.addBrokersFlag(cmd)
	return cmd
}
