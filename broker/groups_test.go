package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/consumergroup"
	"github.com/runnel-dev/runnel/partition"
	"github.com/runnel-dev/runnel/record"
)

func TestFileOffsetsBatchAndPersist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "offsets.json")
	o, err := openFileOffsets(path, false)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := fmt.Sprintf("g%d", i%4)
			if err := o.commitOffsets(ctx, g, map[tp]int64{{Topic: "t", Partition: int32(i % 3)}: int64(i)}, false); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// Lower offsets never win without force.
	if err := o.commitOffsets(ctx, "g0", map[tp]int64{{Topic: "t", Partition: 0}: 1}, false); err != nil {
		t.Fatal(err)
	}
	want := o.offsets("g0")
	if want[tp{Topic: "t", Partition: 0}] != 192 {
		t.Fatalf("g0 t/0 = %d, want 192 (the highest commit)", want[tp{Topic: "t", Partition: 0}])
	}
	if err := o.commitOffsets(ctx, "g1", map[tp]int64{{Topic: "t", Partition: 1}: 5}, true); err != nil {
		t.Fatal(err)
	}
	if err := o.deleteOffsets(ctx, "g3"); err != nil {
		t.Fatal(err)
	}
	again, err := openFileOffsets(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := again.groups(); fmt.Sprint(got) != "[g0 g1 g2]" {
		t.Fatalf("groups after reopen = %v", got)
	}
	if got := again.offsets("g1")[tp{Topic: "t", Partition: 1}]; got != 5 {
		t.Fatalf("g1 t/1 after a forced commit = %d, want 5", got)
	}
	if fmt.Sprint(again.offsets("g0")) != fmt.Sprint(want) {
		t.Fatalf("g0 after reopen = %v, want %v", again.offsets("g0"), want)
	}
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func testCoordinator(t *testing.T) (*coordinator, *fakeClock) {
	offs, err := openFileOffsets("", false)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int32{"t": 3}
	c := newCoordinator(offs, func(s string) int32 { return counts[s] }, slog.New(slog.DiscardHandler))
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c.now = clk.now
	return c, clk
}

func TestCoordinatorMembersSharePartitions(t *testing.T) {
	c, clk := testCoordinator(t)
	ctx := context.Background()
	join := func(id string) *memberSession {
		s, _, err := c.join(joinArgs{group: "g", memberID: id, topics: []string{"t"}})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	release := func(s *memberSession) consumergroup.Assignment {
		a, _, ok := c.assignment(s)
		if !ok {
			t.Fatalf("%s is not in the group", s.member)
		}
		a, err := c.heartbeat("g", s.member, a.Assigned)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := join("a")
	if got, _, _ := c.assignment(a); len(got.Assigned) != 3 {
		t.Fatalf("one member: %v, want all three partitions", got.Assigned)
	}
	b, cc := join("b"), join("c")
	release(a)
	release(b)
	for _, s := range []*memberSession{a, b, cc} {
		got, _, _ := c.assignment(s)
		if len(got.Assigned) != 1 || len(got.Revoking) != 0 {
			t.Fatalf("three members: %s has %v revoking %v, want one each", s.member, got.Assigned, got.Revoking)
		}
	}
	// The session is told when its assignment changes.
	select {
	case <-a.notify:
	default:
		t.Fatal("a was not notified of the rebalance")
	}
	// Commits: the owner may, others are fenced with ErrStaleGeneration.
	ga, _, _ := c.assignment(a)
	mine := ga.Assigned[0]
	if err := c.commit(ctx, "g", "a", ga.Generation, []offsetCommit{{tp: mine, offset: 10}}); err != nil {
		t.Fatal(err)
	}
	if err := c.commit(ctx, "g", "b", ga.Generation, []offsetCommit{{tp: mine, offset: 11}}); !errors.Is(err, ErrStaleGeneration) {
		t.Fatalf("commit by a non-owner: %v, want ErrStaleGeneration", err)
	}
	if err := c.commit(ctx, "g", "", 0, []offsetCommit{{tp: mine, offset: 11}}); !errors.Is(err, ErrStaleGeneration) {
		t.Fatalf("commit without a member while the group has members: %v", err)
	}
	if err := c.seek(ctx, "g", map[tp]int64{mine: 0}); !errors.Is(err, ErrGroupActive) {
		t.Fatalf("seek with live members: %v, want ErrGroupActive", err)
	}
	// b goes silent; a and c keep heartbeating; b times out and its
	// partition moves.
	clk.t = clk.t.Add(6 * time.Second)
	c.heartbeat("g", "a", ga.Assigned)
	gc, _, _ := c.assignment(cc)
	c.heartbeat("g", "c", gc.Assigned)
	clk.t = clk.t.Add(5 * time.Second)
	c.expire(clk.t)
	if _, err := c.heartbeat("g", "b", nil); !errors.Is(err, ErrStaleGeneration) {
		t.Fatalf("heartbeat of a timed-out member: %v", err)
	}
	total := len(release(a).Assigned) + len(release(cc).Assigned)
	if total != 3 {
		t.Fatalf("after b timed out a and c hold %d partitions, want 3", total)
	}
	// A closed stream leaves at once.
	c.leave(a)
	c.leave(cc)
	if v, ok := c.describe("g"); !ok || len(v.members) != 0 || v.offsets[mine] != 10 {
		t.Fatalf("describe after everyone left: %+v %v", v, ok)
	}
	if err := c.seek(ctx, "g", map[tp]int64{mine: 0}); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.describe("g"); v.offsets[mine] != 0 {
		t.Fatalf("after seek: %v", v.offsets)
	}
	if err := c.deleteGroup(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	if err := c.deleteGroup(ctx, "g"); !errors.Is(err, ErrGroupNotFound) {
		t.Fatalf("delete of a deleted group: %v", err)
	}
}

func TestCoordinatorRejectsBadJoins(t *testing.T) {
	c, _ := testCoordinator(t)
	for _, a := range []joinArgs{
		{group: "bad name", topics: []string{"t"}},
		{group: "g"},
		{group: "g", topics: []string{"missing"}},
		{group: "g", topics: []string{"t"}, sessionTimeout: time.Millisecond},
		{group: "g", topics: []string{"t"}, strategy: "roundrobin"},
	} {
		if _, _, err := c.join(a); err == nil {
			t.Errorf("join %+v succeeded", a)
		}
	}
}

func TestGroupLagMetric(t *testing.T) {
	b, err := Open(t.TempDir(), Options{HTTPAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	if _, err := b.topics.create(ctx, "t", 1, 0, nil); err != nil {
		t.Fatal(err)
	}
	_, r, err := b.topics.partition("t", 0)
	if err != nil {
		t.Fatal(err)
	}
	appendRecords(t, r, 10)
	if err := b.groups.store.commitOffsets(ctx, "g", map[tp]int64{{Topic: "t", Partition: 0}: 4}, false); err != nil {
		t.Fatal(err)
	}
	body := scrape(t, "http://"+b.HTTPAddr()+"/metrics")
	for _, want := range []string{
		`runnel_group_lag{group="g",partition="0",topic="t"} 6`,
		`runnel_group_committed_offset{group="g",partition="0",topic="t"} 4`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func appendRecords(t *testing.T, r replica, n int) {
	t.Helper()
	var bld record.Builder
	for i := range n {
		bld.Append(&record.Record{Value: []byte(strconv.Itoa(i))})
	}
	p, err := r.Append(bld.Build(), partition.AcksAll)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// TestFileOffsetsSurviveATornLogAndCompaction checks recovery from the log
// alone, from a log whose last line was cut short, and after compaction.
func TestFileOffsetsSurviveATornLogAndCompaction(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "offsets.json")
	ctx := context.Background()
	o, err := openFileOffsets(path, false)
	if err != nil {
		t.Fatal(err)
	}
	p0 := tp{Topic: "t", Partition: 0}
	for i := range 10 {
		if err := o.commitOffsets(ctx, "g", map[tp]int64{p0: int64(i)}, false); err != nil {
			t.Fatal(err)
		}
	}
	o.close()
	// A crash in the middle of a write leaves half a line.
	f, err := os.OpenFile(filepath.Join(dir, "offsets.log"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`[{"g":"g","o":{"t/0":99`)
	f.Close()
	o, err = openFileOffsets(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := o.offsets("g")[p0]; got != 9 {
		t.Fatalf("after a torn write: %d, want 9", got)
	}
	// The torn tail is gone: new lines append cleanly.
	if err := o.commitOffsets(ctx, "g", map[tp]int64{p0: 10}, false); err != nil {
		t.Fatal(err)
	}
	if err := o.commitOffsets(ctx, "g", map[tp]int64{p0: 3}, true); err != nil {
		t.Fatal(err)
	}
	o.mu.Lock()
	if err := o.compactLocked(); err != nil {
		t.Fatal(err)
	}
	o.mu.Unlock()
	if err := o.commitOffsets(ctx, "h", map[tp]int64{p0: 7}, false); err != nil {
		t.Fatal(err)
	}
	o.close()
	o, err = openFileOffsets(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer o.close()
	if g, h := o.offsets("g")[p0], o.offsets("h")[p0]; g != 3 || h != 7 {
		t.Fatalf("after compaction and reopen: g %d h %d, want 3 and 7", g, h)
	}
}
