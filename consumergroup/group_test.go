package consumergroup

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// TestGroup runs the scripts in testdata. Rewrite the expected output
// after an intended change with: go test ./consumergroup -run TestGroup -rewrite
func TestGroup(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		var g *Group
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			now := epoch
			if d.HasArg("now") {
				var s string
				d.ScanArgs(t, "now", &s)
				dur, err := time.ParseDuration(s)
				if err != nil {
					t.Fatal(err)
				}
				now = epoch.Add(dur)
			}
			arg := func(key string) string {
				var s string
				d.MaybeScanArgs(t, key, &s)
				return s
			}
			switch d.Cmd {
			case "new":
				gen := int64(0)
				if s := arg("generation"); s != "" {
					gen, _ = strconv.ParseInt(s, 10, 64)
				}
				g = New("g", gen)
				return dump(g)
			case "recover":
				d, _ := time.ParseDuration(arg("until"))
				g.Recover(epoch.Add(d))
				return "ok"
			case "partitions":
				n, _ := strconv.Atoi(arg("n"))
				g.SetPartitions(arg("topic"), int32(n))
				return dump(g)
			case "join":
				timeout := 10 * time.Second
				if s := arg("timeout"); s != "" {
					timeout, _ = time.ParseDuration(s)
				}
				_, err := g.Join(now, JoinRequest{MemberID: arg("member"), ClientID: "c-" + arg("member"),
					Topics: splitList(arg("topics")), Strategy: Strategy(arg("strategy")), SessionTimeout: timeout,
					Owned: parseTPs(t, arg("owned")), OwnedSince: atoi64(arg("since"))})
				if err != nil {
					return "error: " + err.Error()
				}
				return dump(g)
			case "heartbeat":
				id := arg("member")
				var owned []TopicPartition
				switch {
				case d.HasArg("owned"):
					owned = parseTPs(t, arg("owned"))
				case d.HasArg("release"):
					// A cooperative member: gives up what it is asked to.
					a, err := g.Assignment(id)
					if err != nil {
						return "error: " + err.Error()
					}
					owned = a.Assigned
				default:
					// A member that holds on to everything it owns.
					a, err := g.Assignment(id)
					if err != nil {
						return "error: " + err.Error()
					}
					owned = append(a.Assigned, a.Revoking...)
				}
				if _, err := g.Heartbeat(now, id, owned); err != nil {
					return "error: " + err.Error()
				}
				return dump(g)
			case "leave":
				g.Leave(arg("member"))
				return dump(g)
			case "expire":
				gone := g.Expire(now)
				return fmt.Sprintf("expired: %s\n%s", orDash(gone), dump(g))
			case "commit":
				gen, _ := strconv.ParseInt(arg("generation"), 10, 64)
				tps := parseTPs(t, arg("tp"))
				if err := g.CheckCommit(arg("member"), gen, tps[0]); err != nil {
					return "error: " + err.Error()
				}
				return "ok"
			case "state":
				return dump(g)
			}
			t.Fatalf("unknown command %q", d.Cmd)
			return ""
		})
	})
}

func atoi64(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func parseTPs(t *testing.T, s string) []TopicPartition {
	var out []TopicPartition
	for _, f := range splitList(s) {
		topic, p, ok := strings.Cut(f, "/")
		n, err := strconv.Atoi(p)
		if !ok || err != nil {
			t.Fatalf("bad partition %q: want TOPIC/N", f)
		}
		out = append(out, TopicPartition{topic, int32(n)})
	}
	return out
}

func orDash[T any](xs []T) string {
	if len(xs) == 0 {
		return "-"
	}
	var s []string
	for _, x := range xs {
		s = append(s, fmt.Sprint(x))
	}
	return strings.Join(s, " ")
}

func dump(g *Group) string {
	var b strings.Builder
	fmt.Fprintf(&b, "generation %d", g.Generation())
	if s := g.Strategy(); s != "" {
		fmt.Fprintf(&b, " %s", s)
	}
	b.WriteString("\n")
	for _, m := range g.Members() {
		fmt.Fprintf(&b, "%s: assigned %s", m.ID, orDash(m.Assigned))
		if len(m.Revoking) > 0 {
			fmt.Fprintf(&b, "; revoking %s", orDash(m.Revoking))
		}
		b.WriteString("\n")
	}
	if u := g.Unowned(); len(u) > 0 {
		fmt.Fprintf(&b, "unowned: %s\n", orDash(u))
	}
	return b.String()
}

// TestRandomOperations drives groups with random joins, leaves, expiries,
// heartbeats and partition changes and checks the invariants after each
// step: a partition has at most one owner; an owner is a member
// subscribed to its topic; a partition is revoked only from a member it
// was not targeted to; once every member has heartbeated with releases,
// every partition is owned and the strategy's balance holds.
func TestRandomOperations(t *testing.T) {
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 7))
		g := New("g", 0)
		strategy := Sticky
		if seed%2 == 1 {
			strategy = Range
		}
		topics := []string{"a", "b"}
		for _, tp := range topics {
			g.SetPartitions(tp, int32(1+rng.IntN(8)))
		}
		now := epoch
		next := 0
		for step := range 300 {
			now = now.Add(time.Duration(rng.IntN(2000)) * time.Millisecond)
			ids := memberIDs(g)
			switch op := rng.IntN(10); {
			case op < 3 || len(ids) == 0:
				next++
				subs := topics[:1+rng.IntN(2)]
				if rng.IntN(2) == 0 {
					subs = []string{topics[1]}
				}
				if _, err := g.Join(now, JoinRequest{MemberID: fmt.Sprintf("m%02d", next), Topics: subs,
					Strategy: strategy, SessionTimeout: 5 * time.Second}); err != nil {
					t.Fatalf("seed %d step %d: join: %v", seed, step, err)
				}
			case op < 4:
				g.Leave(ids[rng.IntN(len(ids))])
			case op < 5:
				g.Expire(now)
			case op < 6:
				g.SetPartitions(topics[rng.IntN(2)], int32(1+rng.IntN(8)))
			default:
				id := ids[rng.IntN(len(ids))]
				a, _ := g.Assignment(id)
				owned := a.Assigned
				if rng.IntN(3) == 0 {
					owned = append(owned, a.Revoking...)
				}
				if _, err := g.Heartbeat(now, id, owned); err != nil {
					t.Fatalf("seed %d step %d: heartbeat: %v", seed, step, err)
				}
			}
			checkInvariants(t, g, fmt.Sprintf("seed %d step %d", seed, step))
		}
		// Settle: everyone releases what it must.
		for _, id := range memberIDs(g) {
			a, _ := g.Assignment(id)
			g.Heartbeat(now, id, a.Assigned)
		}
		checkInvariants(t, g, fmt.Sprintf("seed %d settled", seed))
		if len(memberIDs(g)) > 0 {
			checkSettled(t, g, strategy, fmt.Sprintf("seed %d settled", seed))
		}
	}
}

func memberIDs(g *Group) []string {
	var ids []string
	for _, m := range g.Members() {
		ids = append(ids, m.ID)
	}
	return ids
}

func checkInvariants(t *testing.T, g *Group, where string) {
	t.Helper()
	seen := map[TopicPartition]string{}
	for _, m := range g.Members() {
		for _, tp := range append(slices.Clone(m.Assigned), m.Revoking...) {
			if other, ok := seen[tp]; ok {
				t.Fatalf("%s: %s owned by %s and %s", where, tp, other, m.ID)
			}
			seen[tp] = m.ID
			if !g.exists(tp) {
				t.Fatalf("%s: %s owns %s, which does not exist", where, m.ID, tp)
			}
		}
		for _, tp := range m.Assigned {
			if !slices.Contains(m.Topics, tp.Topic) {
				t.Fatalf("%s: %s assigned %s without subscribing to %s", where, m.ID, tp, tp.Topic)
			}
		}
		for _, tp := range m.Revoking {
			if g.target[tp] == m.ID {
				t.Fatalf("%s: %s revoking %s, which is targeted to it", where, m.ID, tp)
			}
		}
	}
}

func checkSettled(t *testing.T, g *Group, strategy Strategy, where string) {
	t.Helper()
	for _, m := range g.Members() {
		if len(m.Revoking) > 0 {
			t.Fatalf("%s: %s still revoking %v", where, m.ID, m.Revoking)
		}
	}
	if u := g.Unowned(); len(u) > 0 {
		t.Fatalf("%s: unowned %v", where, u)
	}
	if strategy != Sticky {
		return
	}
	// Members with the same subscriptions differ by at most one.
	bySubs := map[string][]int{}
	for _, m := range g.Members() {
		k := strings.Join(m.Topics, ",")
		bySubs[k] = append(bySubs[k], len(m.Assigned))
	}
	for k, counts := range bySubs {
		if slices.Max(counts)-slices.Min(counts) > 1 {
			t.Fatalf("%s: members subscribed to %s hold %v partitions", where, k, counts)
		}
	}
}
