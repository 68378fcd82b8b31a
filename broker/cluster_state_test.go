package broker

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func threeNodes(t *testing.T) *clusterState {
	t.Helper()
	s := newClusterState()
	for id := int32(1); id <= 3; id++ {
		if err := s.apply(command{AddNode: &nodeMeta{ID: id, Addr: "127.0.0.1:1"}}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func TestAssignSpreadsPreferredLeaders(t *testing.T) {
	s := threeNodes(t)
	if err := s.apply(command{CreateTopic: &createTopicCmd{Name: "t", Partitions: 6, Replicas: 3}}); err != nil {
		t.Fatal(err)
	}
	leaders := map[int32]int{}
	for p, pm := range s.Topics["t"].Partitions {
		if len(pm.Replicas) != 3 {
			t.Fatalf("partition %d has replicas %v", p, pm.Replicas)
		}
		seen := map[int32]bool{}
		for _, r := range pm.Replicas {
			if seen[r] {
				t.Fatalf("partition %d has node %d twice: %v", p, r, pm.Replicas)
			}
			seen[r] = true
		}
		leaders[pm.Replicas[0]]++
	}
	if d := cmp.Diff(map[int32]int{1: 2, 2: 2, 3: 2}, leaders); d != "" {
		t.Fatalf("preferred leaders per node (-want +got):\n%s", d)
	}
}

func TestClusterCommands(t *testing.T) {
	s := threeNodes(t)
	create := func(name string, parts, reps int) error {
		return s.apply(command{CreateTopic: &createTopicCmd{Name: name, Partitions: parts, Replicas: reps}})
	}
	if err := create("a", 2, 2); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		err  error
		want error
	}{
		{create("a", 1, 1), ErrTopicExists},
		{create("b", 1, 4), ErrInvalidConfig},
		{create("b", 0, 1), ErrInvalidPartitions},
		{create("b/", 1, 1), ErrInvalidTopicName},
		{s.apply(command{DeleteTopic: new("zz")}), ErrTopicNotFound},
		{s.apply(command{AlterConfigs: &alterConfigsCmd{Name: "a", Set: map[string]string{"nope": "1"}}}), ErrInvalidConfig},
		{s.apply(command{RemoveNode: new(int32(7))}), ErrInvalidRequest},
		{s.apply(command{}), ErrInvalidRequest},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("got %v, want %v", tc.err, tc.want)
		}
	}
	if s.NextTopicID != 2 {
		t.Fatalf("refused commands changed the next topic id: %d", s.NextTopicID)
	}

	// Leader reports: a stale term never overwrites a newer one; a report
	// for a recreated topic (other id) is ignored.
	id := s.Topics["a"].ID
	s.apply(command{LeaderChange: &leaderChangeCmd{Topic: "a", TopicID: id, Partition: 1, Leader: 3, Term: 5}})
	s.apply(command{LeaderChange: &leaderChangeCmd{Topic: "a", TopicID: id, Partition: 1, Leader: 2, Term: 4}})
	s.apply(command{LeaderChange: &leaderChangeCmd{Topic: "a", TopicID: id + 7, Partition: 1, Leader: 1, Term: 9}})
	if pm := s.Topics["a"].Partitions[1]; pm.Leader != 3 || pm.LeaderTerm != 5 {
		t.Fatalf("leader after reports: %+v", pm)
	}

	if err := s.apply(command{AlterConfigs: &alterConfigsCmd{Name: "a", Set: map[string]string{ConfigRetentionBytes: "1000"}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.apply(command{DeleteTopic: new("a")}); err != nil {
		t.Fatal(err)
	}
	// Node 1 holds nothing now: it drains at once and is left to be
	// forgotten.
	if err := s.apply(command{RemoveNode: new(int32(1))}); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]int32{1}, s.drained()); d != "" {
		t.Fatalf("drained (-want +got):\n%s", d)
	}

	// The state survives an encode/decode round trip (snapshots) and every
	// command does too (raft entries).
	if d := cmp.Diff(s, s.clone()); d != "" {
		t.Fatalf("clone differs:\n%s", d)
	}
	c := command{CreateTopic: &createTopicCmd{Name: "x", Partitions: 3, Replicas: 1, Configs: map[string]string{"retention.ms": "-1"}}}
	got, err := decodeCommand(c.encode())
	if err != nil || !cmp.Equal(c, got) {
		t.Fatalf("command round trip: %v %v", got, err)
	}
}

// layout renders the partitions of topic name, one line each: replicas,
// then the raft group reported while it differs.
func layout(s *clusterState, name string) string {
	var b strings.Builder
	for p, pm := range s.Topics[name].Partitions {
		fmt.Fprintf(&b, "%d: %v", p, pm.Replicas)
		if pm.moving() {
			fmt.Fprintf(&b, " members %v", pm.Members)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// elect records a leader for every partition of topic name, as partition
// leaders report themselves.
func elect(t *testing.T, s *clusterState, name string) {
	t.Helper()
	top := s.Topics[name]
	for p, pm := range top.Partitions {
		if err := s.apply(command{LeaderChange: &leaderChangeCmd{Topic: name, TopicID: top.ID, Partition: p, Leader: pm.Replicas[0], Term: 1}}); err != nil {
			t.Fatal(err)
		}
	}
}

// report applies a partition leader's membership report.
func report(t *testing.T, s *clusterState, name string, p int, term, index uint64, members ...int32) {
	t.Helper()
	c := command{PartitionMembers: &membersCmd{Topic: name, TopicID: s.Topics[name].ID, Partition: p, Members: members, Term: term, Index: index}}
	if err := s.apply(c); err != nil {
		t.Fatal(err)
	}
}

func TestRemoveNodeDrains(t *testing.T) {
	s := threeNodes(t)
	if err := s.apply(command{CreateTopic: &createTopicCmd{Name: "t", Partitions: 3, Replicas: 3}}); err != nil {
		t.Fatal(err)
	}
	if err := s.apply(command{CreateTopic: &createTopicCmd{Name: "u", Partitions: 2, Replicas: 1}}); err != nil {
		t.Fatal(err)
	}
	elect(t, s, "t")
	elect(t, s, "u")
	if err := s.apply(command{AddNode: &nodeMeta{ID: 4, Addr: "127.0.0.1:4"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.apply(command{RemoveNode: new(int32(1))}); err != nil {
		t.Fatal(err)
	}
	// Node 4 holds nothing, so it takes node 1's replicas of t, in node
	// 1's place. t/2 had node 1 as its preferred leader: of the new set,
	// node 4 leads the fewest partitions, so it stays in front.
	want := "0: [2 3 4] members [1 2 3]\n1: [3 4 2] members [1 2 3]\n2: [4 2 3] members [1 2 3]\n"
	if d := cmp.Diff(want, layout(s, "t")); d != "" {
		t.Errorf("t after removing node 1 (-want +got):\n%s", d)
	}
	// u/0 is on node 3 (topic id 2 starts at the third node); u/1 was on
	// node 1 and moves to the node with the fewest replicas: 2 and 4 hold
	// three each by then, and the lower id wins the tie.
	if d := cmp.Diff("0: [3]\n1: [2] members [1]\n", layout(s, "u")); d != "" {
		t.Errorf("u after removing node 1 (-want +got):\n%s", d)
	}
	n1 := s.Nodes[1]
	if !n1.Draining || n1.DrainReplicas != 4 || s.holds(1) != 4 {
		t.Fatalf("node 1: %+v, holds %d", n1, s.holds(1))
	}
	for _, pm := range s.Topics["t"].Partitions {
		if !pm.Reassigned {
			t.Fatalf("a moved partition is not marked reassigned: %+v", pm)
		}
	}

	// Removing again is a no-op; registering again keeps the removal.
	before := s.clone()
	if err := s.apply(command{RemoveNode: new(int32(1))}); err != nil {
		t.Fatal(err)
	}
	if err := s.apply(command{AddNode: &nodeMeta{ID: 1, Addr: "127.0.0.1:1"}}); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(before, s); d != "" {
		t.Fatalf("repeated remove or register changed the state:\n%s", d)
	}
	// A draining node takes no new replicas.
	if err := s.apply(command{CreateTopic: &createTopicCmd{Name: "v", Partitions: 3, Replicas: 3}}); err != nil {
		t.Fatal(err)
	}
	for _, pm := range s.Topics["v"].Partitions {
		if slices.Contains(pm.Replicas, 1) {
			t.Fatalf("new topic placed on the draining node: %v", pm.Replicas)
		}
	}
	if err := s.apply(command{ForgetNode: new(int32(1))}); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("forget a node that still holds replicas: %v", err)
	}

	// Leaders report their groups. A report from an older term, or from
	// the same term at a lower index, is stale.
	report(t, s, "t", 0, 2, 10, 1, 2, 3, 4) // 4 is about to join
	// Only 4 is left once 1 is out, but 4 does not vote yet: not settled.
	c := command{PartitionMembers: &membersCmd{Topic: "t", TopicID: s.Topics["t"].ID, Partition: 0, Members: []int32{2, 3, 4}, Nonvoters: []int32{4}, Term: 2, Index: 11}}
	if err := s.apply(c); err != nil || !s.Topics["t"].Partitions[0].moving() {
		t.Fatalf("a group with a nonvoter counts as moved: %v %+v", err, s.Topics["t"].Partitions[0])
	}
	report(t, s, "t", 0, 2, 12, 2, 3, 4)    // 4 votes: settled
	report(t, s, "t", 0, 2, 11, 1, 2, 3, 4) // stale
	report(t, s, "t", 0, 1, 99, 1, 2, 3)    // stale
	report(t, s, "t", 1, 5, 1, 2, 3, 4)
	if d := cmp.Diff("0: [2 3 4]\n1: [3 4 2]\n2: [4 2 3] members [1 2 3]\n", layout(s, "t")); d != "" {
		t.Errorf("t after reports (-want +got):\n%s", d)
	}
	if s.holds(1) != 2 || len(s.drained()) != 0 {
		t.Fatalf("node 1 holds %d, drained %v", s.holds(1), s.drained())
	}
	report(t, s, "t", 2, 3, 7, 2, 3, 4)
	report(t, s, "u", 1, 3, 7, 2)
	if d := cmp.Diff([]int32{1}, s.drained()); d != "" {
		t.Fatalf("drained nodes (-want +got):\n%s", d)
	}
	if err := s.apply(command{ForgetNode: new(int32(1))}); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Nodes[1]; ok {
		t.Fatal("node 1 still in the state after ForgetNode")
	}
	if err := s.apply(command{ForgetNode: new(int32(1))}); err != nil {
		t.Fatalf("forgetting a forgotten node: %v", err)
	}

	// Restarted on its old data, node 1 registers again: refused, and
	// the state does not list it. An operator's AddNode brings it back,
	// and then it registers as any node.
	err := s.apply(command{RegisterNode: &nodeMeta{ID: 1, Addr: "127.0.0.1:1"}})
	if !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), "node 1 was removed from the cluster") {
		t.Fatalf("a removed node registers: %v", err)
	}
	if _, ok := s.Nodes[1]; ok {
		t.Fatal("a removed node's registration put it back into the state")
	}
	if err := s.apply(command{RegisterNode: &nodeMeta{ID: 2, Addr: "127.0.0.1:2", HTTP: "127.0.0.1:12"}}); err != nil || s.Nodes[2].HTTP != "127.0.0.1:12" {
		t.Fatalf("node 2 registers: %v, %+v", err, s.Nodes[2])
	}
	if err := s.apply(command{AddNode: &nodeMeta{ID: 1, Addr: "127.0.0.1:1"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.apply(command{RegisterNode: &nodeMeta{ID: 1, Addr: "127.0.0.1:1", HTTP: "127.0.0.1:11"}}); err != nil {
		t.Fatalf("node 1 registers once added back: %v", err)
	}
	// An add without an HTTP address, applied after the registration,
	// keeps the one registered.
	if err := s.apply(command{AddNode: &nodeMeta{ID: 1, Addr: "127.0.0.1:1"}}); err != nil || s.Nodes[1].HTTP != "127.0.0.1:11" {
		t.Fatalf("node 1 added again: %v, %+v", err, s.Nodes[1])
	}
	if got := s.clone(); got.Removed[1] || got.Nodes[1].ID != 1 {
		t.Fatalf("after adding node 1 back: removed %v, nodes %v", got.Removed, got.Nodes)
	}
}

func TestRemoveNodeRefused(t *testing.T) {
	s := threeNodes(t)
	if err := s.apply(command{CreateTopic: &createTopicCmd{Name: "t", Partitions: 2, Replicas: 3}}); err != nil {
		t.Fatal(err)
	}
	// Before the partitions have a leader, nothing moves.
	if err := s.apply(command{RemoveNode: new(int32(2))}); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("remove before the first leader: %v, want ErrNoLeader", err)
	}
	elect(t, s, "t")
	before := s.clone()
	err := s.apply(command{RemoveNode: new(int32(2))})
	if !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("remove with RF 3 on 3 nodes: %v", err)
	}
	for _, want := range []string{`topic "t" has replication factor 3`, "only 2 other node(s)", "runnel cluster add", "runnel topic reassign t --partition 0 --replicas 3,1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if d := cmp.Diff(before, s); d != "" {
		t.Fatalf("a refused removal changed the state:\n%s", d)
	}
	for _, tc := range []struct {
		id   int32
		want error
	}{{7, ErrInvalidRequest}} {
		if err := s.apply(command{RemoveNode: &tc.id}); !errors.Is(err, tc.want) {
			t.Errorf("remove node %d: %v, want %v", tc.id, err, tc.want)
		}
	}

	// Following the advice: fewer replicas, then the removal goes through.
	for p := range 2 {
		var rs []int32
		for _, r := range s.Topics["t"].Partitions[p].Replicas {
			if r != 2 {
				rs = append(rs, r)
			}
		}
		if err := s.apply(command{ReassignPartition: &reassignCmd{Topic: "t", Partition: p, Replicas: rs}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.apply(command{RemoveNode: new(int32(2))}); err != nil {
		t.Fatal(err)
	}
	if s.holds(2) != 2 {
		t.Fatalf("node 2 holds %d partitions until the leaders report, want 2", s.holds(2))
	}

	// The last node is never removed.
	one := newClusterState()
	one.apply(command{AddNode: &nodeMeta{ID: 1, Addr: "a:1"}})
	if err := one.apply(command{RemoveNode: new(int32(1))}); !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), "last node") {
		t.Fatalf("remove the last node: %v", err)
	}
}

func TestReassignPartition(t *testing.T) {
	s := threeNodes(t)
	s.apply(command{AddNode: &nodeMeta{ID: 4, Addr: "127.0.0.1:4"}})
	if err := s.apply(command{CreateTopic: &createTopicCmd{Name: "t", Partitions: 2, Replicas: 3}}); err != nil {
		t.Fatal(err)
	}
	s.apply(command{AddNode: &nodeMeta{ID: 5, Addr: "127.0.0.1:5"}})
	reassign := func(p int, rs ...int32) error {
		return s.apply(command{ReassignPartition: &reassignCmd{Topic: "t", Partition: p, Replicas: rs}})
	}
	if err := reassign(0, 1, 2, 3); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("reassign before the first leader: %v", err)
	}
	elect(t, s, "t")
	s.apply(command{RemoveNode: new(int32(5))}) // holds nothing: it drains at once
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"unknown topic", s.apply(command{ReassignPartition: &reassignCmd{Topic: "x", Replicas: []int32{1}}}), ErrTopicNotFound},
		{"partition out of range", reassign(2, 1), ErrPartitionNotFound},
		{"negative partition", reassign(-1, 1), ErrPartitionNotFound},
		{"no replicas", reassign(0), ErrInvalidRequest},
		{"twice", reassign(0, 1, 1), ErrInvalidRequest},
		{"unknown node", reassign(0, 1, 9), ErrInvalidRequest},
		{"draining node", reassign(0, 1, 5), ErrInvalidRequest},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	before := layout(s, "t")
	if err := reassign(1, s.Topics["t"].Partitions[1].Replicas...); err != nil {
		t.Fatal(err)
	}
	if layout(s, "t") != before || s.Topics["t"].Partitions[1].Reassigned {
		t.Fatal("reassigning a partition to its own replicas changed it")
	}

	// A reorder moves only the preferred leader: the group stays.
	pm := s.Topics["t"].Partitions[0]
	rev := slices.Clone(pm.Replicas)
	slices.Reverse(rev)
	if err := reassign(0, rev...); err != nil {
		t.Fatal(err)
	}
	if pm := s.Topics["t"].Partitions[0]; pm.moving() || !slices.Equal(pm.Replicas, rev) {
		t.Fatalf("reorder: %+v", pm)
	}
	// A new set keeps the old members until reported; a second
	// reassignment while the first is under way keeps them too, and one
	// back to the group as it is settles at once.
	old := s.Topics["t"].Partitions[0].Replicas
	if err := reassign(0, 4); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(sortedIDs(old), s.Topics["t"].Partitions[0].Members); d != "" {
		t.Fatalf("members after reassigning (-want +got):\n%s", d)
	}
	if err := reassign(0, 4, 1); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(sortedIDs(old), s.Topics["t"].Partitions[0].Members); d != "" {
		t.Fatalf("members after a second reassignment (-want +got):\n%s", d)
	}
	if err := reassign(0, old...); err != nil {
		t.Fatal(err)
	}
	if pm := s.Topics["t"].Partitions[0]; pm.moving() || !pm.Reassigned {
		t.Fatalf("back to the old replicas: %+v", pm)
	}
	// Reports for another incarnation of the topic are ignored.
	c := command{PartitionMembers: &membersCmd{Topic: "t", TopicID: 99, Partition: 0, Members: []int32{9}, Term: 9, Index: 9}}
	if err := s.apply(c); err != nil || s.Topics["t"].Partitions[0].moving() {
		t.Fatalf("report for another topic id: %v %+v", err, s.Topics["t"].Partitions[0])
	}
	// Every command round-trips through JSON, as raft entries do.
	for _, c := range []command{
		{ReassignPartition: &reassignCmd{Topic: "t", Partition: 1, Replicas: []int32{3, 1}}},
		{PartitionMembers: &membersCmd{Topic: "t", TopicID: 1, Partition: 1, Members: []int32{1, 3}, Term: 2, Index: 40}},
		{ForgetNode: new(int32(5))},
	} {
		got, err := decodeCommand(c.encode())
		if err != nil || !cmp.Equal(c, got) {
			t.Fatalf("command round trip: %+v %v", got, err)
		}
	}
	if d := cmp.Diff(s, s.clone()); d != "" {
		t.Fatalf("clone differs:\n%s", d)
	}
}

func sortedIDs(ids []int32) []int32 { return slices.Sorted(slices.Values(ids)) }
