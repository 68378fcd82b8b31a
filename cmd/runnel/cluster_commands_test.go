package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/internal/testcluster"
)

// clusterNodes runs cluster info --format json and returns the nodes.
func clusterNodes(t *testing.T, addr string) []nodeJSON {
	t.Helper()
	var out clusterJSON
	if err := json.Unmarshal([]byte(mustCLI(t, addr, "", "cluster", "info", "--format", "json")), &out); err != nil {
		t.Fatal(err)
	}
	return out.Nodes
}

func TestClusterRemoveAndReassign(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Nodes 1, 2 and 3, in the order of their addresses.
	brokers := strings.Join(testcluster.Start(t, ctx), ",")
	// The topic Start creates to see the cluster ready would hold replicas
	// on node 3 and count in each node's replicas.
	mustCLI(t, brokers, "", "topic", "delete", "ready")
	mustCLI(t, brokers, "", "topic", "create", "t", "-p", "2", "-r", "3")
	mustCLI(t, brokers, "a\nb\nc\nd\n", "produce", "t")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"cluster", "remove", "0"}, `node id "0": use a positive integer`},
		{[]string{"cluster", "remove", "9"}, "node 9 is not in the cluster"},
		{[]string{"cluster", "remove", "3"}, `topic "t" has replication factor 3 and only 2 other node(s)`},
		{[]string{"topic", "reassign", "t", "--replicas", "1,2"}, "--partition is required"},
		{[]string{"topic", "reassign", "t", "--partition", "0"}, "--replicas is required"},
		{[]string{"topic", "reassign", "t", "--partition", "0", "--replicas", "1,x"}, `"x" is not a node id`},
		{[]string{"topic", "reassign", "t", "--partition", "0", "--replicas", "1,1"}, "node 1 appears twice"},
		{[]string{"topic", "reassign", "t", "--partition", "5", "--replicas", "1"}, "has no partition 5"},
		{[]string{"topic", "reassign", "t", "--partition", "0", "--replicas", "1,7"}, "node 7 is not in the cluster"},
	} {
		_, _, errLine := cli(t, brokers, "", tc.args...)
		if !strings.Contains(errLine, tc.want) {
			t.Errorf("runnel %s: %q, want it to say %q", strings.Join(tc.args, " "), errLine, tc.want)
		}
	}

	// Move both partitions off node 3, then remove it.
	for p := range 2 {
		out := mustCLI(t, brokers, "", "topic", "reassign", "t", "--partition", fmt.Sprint(p), "--replicas", "2,1", "--format", "json")
		var pi partitionOut
		if err := json.Unmarshal([]byte(out), &pi); err != nil {
			t.Fatalf("reassign json %q: %v", out, err)
		}
		if !slices.Equal(pi.Replicas, []int32{2, 1}) || pi.Leader != 2 {
			t.Fatalf("partition %d after reassign: %+v", p, pi)
		}
	}
	for _, n := range clusterNodes(t, brokers) {
		if want := map[int32]int{1: 2, 2: 2, 3: 0}[n.ID]; n.Replicas != want || n.Draining {
			t.Fatalf("node %+v: want %d replicas", n, want)
		}
	}
	_, stderr, errLine := cli(t, brokers, "", "cluster", "remove", "3")
	if errLine != "" || !strings.Contains(stderr, "node 3 has left the cluster") {
		t.Fatalf("cluster remove 3: %q %q", stderr, errLine)
	}
	var ids []int32
	for _, n := range clusterNodes(t, brokers) {
		ids = append(ids, n.ID)
	}
	if !slices.Equal(ids, []int32{1, 2}) {
		t.Fatalf("nodes after removing 3: %v", ids)
	}
	var info clusterJSON
	if err := json.Unmarshal([]byte(mustCLI(t, brokers, "", "cluster", "info", "--format", "json")), &info); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(info.Removed, []int32{3}) {
		t.Fatalf("removed nodes after removing 3: %v", info.Removed)
	}
	if out := mustCLI(t, brokers, "", "cluster", "info"); !strings.Contains(out, "removed nodes: 3 ") {
		t.Fatalf("cluster info does not list node 3 as removed:\n%s", out)
	}
	recs := parseJSONLines(t, mustCLI(t, brokers, "", "consume", "t", "--until-end", "--format", "json"))
	if len(recs) != 4 {
		t.Fatalf("read %d records back, want 4", len(recs))
	}
}

func TestClusterCommandsOnASingleNode(t *testing.T) {
	addr := startBroker(t, broker.Options{})
	mustCLI(t, addr, "", "topic", "create", "s")
	for _, args := range [][]string{
		{"topic", "reassign", "s", "--partition", "0", "--replicas", "1"},
		{"cluster", "remove", "1"},
	} {
		_, _, errLine := cli(t, addr, "", args...)
		if !strings.Contains(errLine, "this node runs alone") {
			t.Errorf("runnel %s on a single node: %q", strings.Join(args, " "), errLine)
		}
	}
	nodes := clusterNodes(t, addr)
	if len(nodes) != 1 || nodes[0].Replicas != 1 {
		t.Fatalf("single node info: %+v", nodes)
	}
}

// TestNodeState checks the progress line of a node being removed.
func TestNodeState(t *testing.T) {
	for _, tc := range []struct {
		n    nodeJSON
		want string
	}{
		{nodeJSON{Replicas: 4}, "active"},
		{nodeJSON{Draining: true, Replicas: 3, DrainReplicas: 5}, "removing: 2 of 5 replicas moved"},
		{nodeJSON{Draining: true, Replicas: 0, DrainReplicas: 5}, "removing: all 5 replicas moved; it leaves once it has stopped them"},
	} {
		if got := nodeState(tc.n); got != tc.want {
			t.Errorf("nodeState(%+v) = %q, want %q", tc.n, got, tc.want)
		}
	}
}
