package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/client"
)

// member runs one group member that records every value it is handed.
type member struct {
	g      *client.GroupConsumer
	cancel context.CancelFunc
	done   chan error

	mu   sync.Mutex
	seen []string
}

func startMember(t *testing.T, c *client.Client, group string, topics []string, opts ...client.GroupOption) *member {
	t.Helper()
	g, err := c.JoinGroup(testContext(t), group, topics, opts...)
	if err != nil {
		t.Fatalf("join %s: %v", group, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{g: g, cancel: cancel, done: make(chan error, 1)}
	go func() {
		var err error
		for r, e := range g.Records(ctx) {
			if e != nil {
				err = e
				break
			}
			m.mu.Lock()
			m.seen = append(m.seen, string(r.Value))
			m.mu.Unlock()
		}
		m.done <- err
	}()
	t.Cleanup(func() { m.stop(t) })
	return m
}

// stop ends the member cleanly: the loop ends, offsets are committed and
// the member leaves.
func (m *member) stop(t *testing.T) {
	if m.cancel == nil {
		return
	}
	m.cancel()
	if err := <-m.done; err != nil {
		t.Errorf("member %s: %v", m.g.MemberID(), err)
	}
	if err := m.g.Close(context.Background()); err != nil {
		t.Errorf("close member %s: %v", m.g.MemberID(), err)
	}
	m.cancel = nil
}

func (m *member) values() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.seen)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func produceValues(t *testing.T, c *client.Client, topic string, from, n int) {
	t.Helper()
	recs := make([]*client.Record, n)
	for i := range recs {
		recs[i] = &client.Record{Topic: topic, Key: []byte(strconv.Itoa(from + i)), Value: []byte(strconv.Itoa(from + i))}
	}
	if err := c.ProduceSync(testContext(t), recs...); err != nil {
		t.Fatal(err)
	}
}

func counts(ms ...*member) []int {
	var out []int
	for _, m := range ms {
		out = append(out, len(m.g.Assignment()))
	}
	return out
}

func TestGroupSpreadsPartitions(t *testing.T) {
	b := openBroker(t, "")
	c := newClient(t, b)
	createTopic(t, c, "t", 3, nil)

	a := startMember(t, c, "g", []string{"t"})
	waitFor(t, "one member to get all three partitions", 10*time.Second, func() bool { return len(a.g.Assignment()) == 3 })
	bm := startMember(t, c, "g", []string{"t"})
	cm := startMember(t, c, "g", []string{"t"})
	waitFor(t, "three members to get one partition each", 10*time.Second, func() bool {
		return slices.Equal(counts(a, bm, cm), []int{1, 1, 1})
	})
	d := startMember(t, c, "g", []string{"t"})
	waitFor(t, "a fourth member to stay idle", 10*time.Second, func() bool {
		got := counts(a, bm, cm, d)
		return slices.Equal(got, []int{1, 1, 1, 0})
	})
	// A clean exit hands the partition on at once.
	bm.stop(t)
	waitFor(t, "b's partition to move to the idle member", 10*time.Second, func() bool {
		return slices.Equal(counts(a, cm, d), []int{1, 1, 1})
	})
	info, err := c.DescribeGroup(testContext(t), "g")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Members) != 3 || len(info.Partitions) != 3 || info.State != "stable" {
		t.Fatalf("describe: %+v", info)
	}
}

func TestGroupResumesFromCommittedOffsets(t *testing.T) {
	b := openBroker(t, "")
	c := newClient(t, b)
	createTopic(t, c, "t", 2, nil)
	produceValues(t, c, "t", 0, 100)

	// Read 30 records with manual commits, commit, leave.
	g, err := c.JoinGroup(testContext(t), "g", []string{"t"}, client.ManualCommit())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	ctx, cancel := context.WithCancel(testContext(t))
	for r, err := range g.Records(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		seen[string(r.Value)] = true
		if len(seen) == 30 {
			if err := g.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	cancel()
	if err := g.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	committed, err := c.CommittedOffsets(testContext(t), "g")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, off := range committed {
		total += off
	}
	if total != 30 {
		t.Fatalf("committed %v (sum %d), want offsets covering the 30 records read", committed, total)
	}
	// A new member reads exactly the other 70.
	m := startMember(t, c, "g", []string{"t"})
	waitFor(t, "the remaining 70 records", 10*time.Second, func() bool { return len(m.values()) >= 70 })
	for _, v := range m.values() {
		if seen[v] {
			t.Fatalf("record %s read again after its offset was committed", v)
		}
		seen[v] = true
	}
	if len(seen) != 100 {
		t.Fatalf("read %d distinct records, want 100", len(seen))
	}
	// Drained: lag 0 on every partition once the member's commits land.
	m.stop(t)
	info, err := c.DescribeGroup(testContext(t), "g")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range info.Partitions {
		if p.Lag != 0 || p.Committed != p.EndOffset {
			t.Fatalf("after draining, %s/%d has committed %d end %d lag %d", p.Topic, p.Partition, p.Committed, p.EndOffset, p.Lag)
		}
	}
}

func TestGroupSeekReplays(t *testing.T) {
	b := openBroker(t, "")
	c := newClient(t, b)
	createTopic(t, c, "t", 3, nil)
	produceValues(t, c, "t", 0, 60)
	m := startMember(t, c, "g", []string{"t"})
	waitFor(t, "60 records", 10*time.Second, func() bool { return len(m.values()) == 60 })
	// Seek is refused while the group has members.
	if err := c.SeekGroup(testContext(t), "g", "t", client.Start()); !errors.Is(err, client.ErrNotLeader) && !errors.Is(err, client.ErrStaleGeneration) {
		var be *client.Error
		if !errors.As(err, &be) || be.Reason != "GROUP_ACTIVE" {
			t.Fatalf("seek with a live member: %v, want GROUP_ACTIVE", err)
		}
	}
	m.stop(t)
	if err := c.SeekGroup(testContext(t), "g", "t", client.Start()); err != nil {
		t.Fatal(err)
	}
	again := startMember(t, c, "g", []string{"t"})
	waitFor(t, "the 60 records again", 10*time.Second, func() bool { return len(again.values()) == 60 })
	again.stop(t)
	groups, err := c.ListGroups(testContext(t))
	if err != nil || len(groups) != 1 || groups[0].Group != "g" || groups[0].State != "empty" {
		t.Fatalf("list groups: %+v, %v", groups, err)
	}
	if err := c.DeleteGroup(testContext(t), "g"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DescribeGroup(testContext(t), "g"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("describe of a deleted group: %v, want ErrNotFound", err)
	}
}

// TestGroupAtLeastOnceUnderChurn produces while members join and leave and
// checks that every record is processed at least once and that committed
// offsets never go back.
func TestGroupAtLeastOnceUnderChurn(t *testing.T) {
	b := openBroker(t, "")
	c := newClient(t, b)
	createTopic(t, c, "t", 4, nil)
	const total = 4000
	opts := []client.GroupOption{client.AutoCommitInterval(20 * time.Millisecond)}

	stopWatch := make(chan struct{})
	watchErr := make(chan error, 1)
	go func() {
		last := map[client.TopicPartition]int64{}
		for {
			select {
			case <-stopWatch:
				watchErr <- nil
				return
			case <-time.After(5 * time.Millisecond):
			}
			offs, err := c.CommittedOffsets(context.Background(), "g")
			if err != nil {
				watchErr <- err
				return
			}
			for tp, o := range offs {
				if o < last[tp] {
					watchErr <- fmt.Errorf("committed offset of %s went back from %d to %d", tp, last[tp], o)
					return
				}
				last[tp] = o
			}
		}
	}()

	var all []*member
	live := []*member{startMember(t, c, "g", []string{"t"}, opts...)}
	all = append(all, live[0])
	for i := range 8 {
		produceValues(t, c, "t", i*total/8, total/8)
		if i%2 == 0 {
			m := startMember(t, c, "g", []string{"t"}, opts...)
			live, all = append(live, m), append(all, m)
		} else if len(live) > 1 {
			live[0].stop(t)
			live = live[1:]
		}
	}
	waitFor(t, "every record processed", 20*time.Second, func() bool {
		seen := map[string]bool{}
		for _, m := range all {
			for _, v := range m.values() {
				seen[v] = true
			}
		}
		return len(seen) == total
	})
	for _, m := range live {
		m.stop(t)
	}
	close(stopWatch)
	if err := <-watchErr; err != nil {
		t.Fatal(err)
	}
	var n int
	for _, m := range all {
		n += len(m.values())
	}
	t.Logf("%d records processed %d times in all (%d duplicates from rebalances)", total, n, n-total)
}

func TestGroupMemberSeek(t *testing.T) {
	b := openBroker(t, "")
	c := newClient(t, b)
	createTopic(t, c, "t", 1, nil)
	produceValues(t, c, "t", 0, 20)
	g, err := c.JoinGroup(testContext(t), "g", []string{"t"})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close(context.Background())
	var got []int64
	sought := false
	for r, err := range g.Records(testContext(t)) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r.Offset)
		if r.Offset == 9 && !sought {
			g.Seek(client.TopicPartition{Topic: "t", Partition: 0}, client.Offset(5))
			sought = true
		}
		if r.Offset == 19 {
			break
		}
	}
	want := []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}
	if !slices.Equal(got, want) {
		t.Fatalf("offsets read: %v, want %v", got, want)
	}
}

func TestTwoGroupsEachGetEveryRecord(t *testing.T) {
	b := openBroker(t, "")
	c := newClient(t, b)
	createTopic(t, c, "t", 3, nil)
	produceValues(t, c, "t", 0, 300)
	a1, a2 := startMember(t, c, "a", []string{"t"}), startMember(t, c, "a", []string{"t"})
	b1 := startMember(t, c, "b", []string{"t"})
	distinct := func(ms ...*member) int {
		seen := map[string]bool{}
		for _, m := range ms {
			for _, v := range m.values() {
				seen[v] = true
			}
		}
		return len(seen)
	}
	waitFor(t, "both groups to read all 300 records", 10*time.Second, func() bool {
		return distinct(a1, a2) == 300 && distinct(b1) == 300
	})
}
