package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

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
	Moves      []moveJSON  `json:"moves"`
	// Removed are the ids of the nodes removed from the cluster.
	Removed []int32 `json:"removed"`
}

type nodeJSON struct {
	ID   int32  `json:"id"`
	Addr string `json:"addr"`
	HTTP string `json:"http,omitempty"`
	// Replicas counts the partitions the node holds; -1 when no node
	// reached knows the controller leader.
	Replicas      int  `json:"replicas"`
	Draining      bool `json:"draining,omitempty"`
	DrainReplicas int  `json:"drain_replicas,omitempty"`
}

// moveJSON is a partition whose replicas are moving.
type moveJSON struct {
	Topic     string  `json:"topic"`
	Partition int32   `json:"partition"`
	Replicas  []int32 `json:"replicas"`
	Members   []int32 `json:"members"`
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
			// Replicas, removals and moves as the controller leader has
			// them (or the node asked with --node): a node that is behind,
			// or was removed, would show them stale.
			pl, plErr := c.ClusterPlacement(cmd.Context(), node)
			out := clusterJSON{Node: st.Node, Controller: st.Controller, Nodes: []nodeJSON{}, Groups: []groupJSON{}, Moves: []moveJSON{}, Removed: []int32{}}
			if plErr == nil {
				out.Removed = append(out.Removed, pl.Removed...)
				for _, n := range pl.Nodes {
					out.Nodes = append(out.Nodes, nodeJSON{n.ID, n.Addr, n.HTTP, n.Replicas, n.Draining, n.DrainReplicas})
				}
				for _, m := range pl.Moves {
					out.Moves = append(out.Moves, moveJSON{m.Topic, m.Partition, m.Replicas, m.Members})
				}
			} else {
				for _, n := range st.Nodes {
					out.Nodes = append(out.Nodes, nodeJSON{ID: n.ID, Addr: n.Addr, HTTP: n.HTTP, Replicas: -1})
				}
			}
			for _, g := range st.Groups {
				out.Groups = append(out.Groups, groupJSON{g.Group, g.State, g.Leader, g.Term, g.CommitIndex, g.AppliedIndex, g.LastContact.Milliseconds()})
			}
			if f.format == "json" {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "answered by node %d; controller leader: %s\n", st.Node, nodeOrNone(st.Controller))
			if plErr != nil {
				fmt.Fprintf(w, "replica counts unknown: %v\n", explain(plErr))
			}
			fmt.Fprintln(w, "\nNODE\tADDR\tHTTP\tREPLICAS\tSTATE")
			for _, n := range out.Nodes {
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", n.ID, n.Addr, n.HTTP, countOrUnknown(n.Replicas), nodeState(n))
			}
			if len(out.Removed) > 0 {
				fmt.Fprintf(w, "\nremoved nodes: %s (started again on their old data, they do not rejoin)\n", ids(out.Removed))
			}
			if len(out.Moves) > 0 {
				fmt.Fprintln(w, "\nMOVING\tTO\tRAFT GROUP NOW")
				for _, m := range out.Moves {
					fmt.Fprintf(w, "%s/%d\t%s\t%s\n", m.Topic, m.Partition, ids(m.Replicas), ids(m.Members))
				}
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

// nodeState says whether a node is being removed, and how far.
func nodeState(n nodeJSON) string {
	if !n.Draining {
		return "active"
	}
	total := max(n.DrainReplicas, n.Replicas)
	if n.Replicas == 0 {
		// The controller leader now waits for the node to stop them (at
		// most a minute) before it takes the node out.
		return fmt.Sprintf("removing: all %d replicas moved; it leaves once it has stopped them", total)
	}
	return fmt.Sprintf("removing: %d of %d replicas moved", total-n.Replicas, total)
}

func countOrUnknown(n int) string {
	if n < 0 {
		return "?"
	}
	return strconv.Itoa(n)
}

// ids joins node ids with commas.
func ids(list []int32) string {
	s := make([]string, len(list))
	for i, id := range list {
		s[i] = strconv.Itoa(int(id))
	}
	return strings.Join(s, ",")
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
			id, err := parseNodeID(args[0])
			if err != nil {
				return err
			}
			c, err := f.newClient(cmd.Context())
			if err != nil {
				return explain(err)
			}
			defer c.Close()
			if err := c.AddNode(cmd.Context(), client.Node{ID: id, Addr: args[1], HTTP: http}); err != nil {
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
	var (
		f      clientFlags
		noWait bool
	)
	cmd := &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a node: move its replicas to the other nodes, then take it out",
		Long: `Remove node ID from the cluster while it runs. The node takes no new
replicas; each of its partition replicas is reassigned to the node with the
fewest, which catches up before it votes; then the node leaves the partitions'
raft groups, drops its data, and leaves the cluster. Writes and reads go on
throughout. A node that is down by then leaves without dropping its data:
delete its data folder. Started again on it, the node serves nothing, and its
log and /readyz say that it was removed. The command waits until the node has
left, showing progress, unless --no-wait; Ctrl-C stops waiting, not the
removal.

A topic whose replication factor equals the number of nodes that would remain
has nowhere to go: add a node first (runnel cluster add), or give its partitions
fewer replicas with runnel topic reassign.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseNodeID(args[0])
			if err != nil {
				return err
			}
			c, err := f.newClient(cmd.Context())
			if err != nil {
				return explain(err)
			}
			defer c.Close()
			st, err := c.DecommissionNode(cmd.Context(), id)
			if err != nil {
				return explain(err)
			}
			errw := cmd.ErrOrStderr()
			if !st.Draining {
				fmt.Fprintf(errw, "node %d has left the cluster\n", id)
				return nil
			}
			fmt.Fprintf(errw, "removing node %d: moving its %s to the other nodes\n", id, plural(max(st.DrainReplicas, st.Replicas), "replica"))
			if noWait {
				fmt.Fprintln(errw, "follow it with: runnel cluster info")
				return nil
			}
			last := ""
			err = follow(cmd.Context(), c, func(p client.Placement) bool {
				n, ok := p.FindNode(id)
				if !ok {
					return true
				}
				line := nodeState(nodeJSON{Replicas: n.Replicas, Draining: n.Draining, DrainReplicas: n.DrainReplicas})
				if line != last {
					fmt.Fprintf(errw, "node %d: %s\n", id, line)
					last = line
				}
				return false
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(errw, "node %d has left the cluster; stop its runnel serve process (its data folder can then be deleted)\n", id)
			return nil
		},
	}
	f.addBrokersFlag(cmd)
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the removal has started")
	return cmd
}

// follow polls the controller leader's placement until done says the
// change is complete. Ctrl-C stops the waiting, not the change.
func follow(ctx context.Context, c *client.Client, done func(client.Placement) bool) error {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		p, err := c.ClusterPlacement(ctx, "")
		if err == nil && done(p) {
			return nil
		}
		if err != nil && ctx.Err() == nil && !client.Retriable(err) {
			return explain(err)
		}
		select {
		case <-ctx.Done():
			return errors.New("stopped waiting; the change goes on in the cluster: follow it with runnel cluster info")
		case <-tick.C:
		}
	}
}

// parseNodeID parses the ID argument of cluster add and cluster remove.
func parseNodeID(s string) (int32, error) {
	id, err := strconv.ParseInt(s, 10, 32)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("node id %q: use a positive integer", s)
	}
	return int32(id), nil
}
