package broker

import (
	"errors"
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
		{s.apply(command{RemoveNode: new(int32(1))}), ErrInvalidRequest},
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
	if err := s.apply(command{RemoveNode: new(int32(1))}); err != nil {
		t.Fatal(err)
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
