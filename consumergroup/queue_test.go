package consumergroup

import (
	"fmt"
	"iter"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

// fakeLog is the partition a queue test leases from.
type fakeLog []QueueRecord

func (l fakeLog) from(next int64) iter.Seq[QueueRecord] {
	return func(yield func(QueueRecord) bool) {
		for _, r := range l {
			if r.Offset >= next && !yield(r) {
				return
			}
		}
	}
}

func ms(t *testing.T, s string) int64 {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d.Milliseconds()
}

// TestQueue runs the scripts in queue_testdata. Times are durations after
// zero. Rewrite the expected output after an intended change with:
// go test ./consumergroup -run TestQueue -rewrite
func TestQueue(t *testing.T) {
	datadriven.Walk(t, "queue_testdata", func(t *testing.T, path string) {
		var q *Queue
		var l fakeLog
		var leases uint64 // the last lease number
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			arg := func(key, def string) string {
				s := def
				d.MaybeScanArgs(t, key, &s)
				return s
			}
			num := func(key string, def int64) int64 {
				n, err := strconv.ParseInt(arg(key, strconv.FormatInt(def, 10)), 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
			now := ms(t, arg("now", "0s"))
			switch d.Cmd {
			case "new":
				q = NewQueue(QueueConfig{KeyOrdering: d.HasArg("ordering")}, num("start", 0))
				l = nil
				return dumpQueue(q)
			case "append":
				// One record per line: "key=K deliver=DUR" (both optional).
				for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
					r := QueueRecord{Offset: int64(len(l))}
					if len(l) == 0 {
						r.Offset = num("from", 0)
					} else {
						r.Offset = l[len(l)-1].Offset + 1
					}
					for _, f := range strings.Fields(line) {
						k, v, _ := strings.Cut(f, "=")
						switch k {
						case "key":
							r.Key = []byte(v)
						case "deliver":
							r.DeliverAt = ms(t, v)
						case "-":
						default:
							t.Fatalf("append: unknown field %q", f)
						}
					}
					l = append(l, r)
				}
				return fmt.Sprintf("log ends at %d", l[len(l)-1].Offset+1)
			case "lease":
				ls := q.Lease(now, int(num("max", 1)), ms(t, arg("vis", "30s")), leases+1, l.from(q.Next()))
				leases += uint64(len(ls))
				var b strings.Builder
				for _, x := range ls {
					fmt.Fprintf(&b, "leased %d attempt %d until %s lease %d\n", x.Offset, x.Attempt, time.Duration(x.Deadline)*time.Millisecond, x.Lease)
				}
				if len(ls) == 0 {
					b.WriteString("nothing\n")
				}
				return b.String() + dumpQueue(q)
			case "ack", "nack", "extend", "reject", "release":
				kind := map[string]SettleKind{"ack": Ack, "nack": Nack, "extend": Extend, "reject": Reject, "release": Release}[d.Cmd]
				// A release names the lease's deadline with until=; lease=
				// names the lease's number (default 0: none).
				dur := ms(t, arg("by", "0s"))
				if kind == Release {
					dur = ms(t, arg("until", "0s"))
				}
				err := q.Settle(now, Settle{Kind: kind, Offset: num("off", 0), Attempt: int(num("attempt", 1)), Duration: dur, Lease: uint64(num("lease", 0))})
				if err != nil {
					return "error: " + err.Error()
				}
				return dumpQueue(q)
			case "reset":
				q.Reset(num("off", 0))
				return dumpQueue(q)
			case "restore":
				hdr, recs := q.Encode()
				q2, err := DecodeQueue(hdr, func(yield func(int64, []byte) bool) {
					for _, c := range recs {
						if !yield(c.Offset, c.Value) {
							return
						}
					}
				})
				if err != nil {
					return "error: " + err.Error()
				}
				if a, b := dumpQueue(q), dumpQueue(q2); a != b {
					t.Fatalf("restored state differs:\n%s\nwant\n%s", b, a)
				}
				q = q2
				return dumpQueue(q)
			case "due":
				at, ok := q.NextDue()
				if !ok {
					return "none"
				}
				return time.Duration(at * int64(time.Millisecond)).String()
			}
			t.Fatalf("unknown command %q", d.Cmd)
			return ""
		})
	})
}

func dumpQueue(q *Queue) string {
	var b strings.Builder
	fmt.Fprintf(&b, "window [%d, %d) clock %s\n", q.start, q.next, time.Duration(q.clock)*time.Millisecond)
	offs := make([]int64, 0, len(q.recs))
	for off := range q.recs {
		offs = append(offs, off)
	}
	slices.Sort(offs)
	for _, off := range offs {
		r := q.recs[off]
		state := "available"
		if r.state == recLeased {
			state = "leased"
		}
		fmt.Fprintf(&b, "%d: %s deliveries %d", off, state, r.deliveries)
		if r.lease != 0 {
			fmt.Fprintf(&b, " lease %d", r.lease)
		}
		if r.at != 0 {
			fmt.Fprintf(&b, " at %s", time.Duration(r.at)*time.Millisecond)
		}
		if !q.head(off, r) {
			b.WriteString(" blocked")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// TestQueueRandom drives a queue with random calls and checks its
// invariants against a model after each: a record is never leased to two
// consumers at once, no record of a key is delivered while an earlier one
// is unsettled, a record is not handed out before its deliver-at time,
// every record is eventually acked exactly once, a delivery's attempt
// counts the record's leases less those released unseen, and a group
// rebuilt from its encoded state behaves the same as the original.
func TestQueueRandom(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) { runQueueRandom(t, seed) })
	}
}

func runQueueRandom(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 42))
	ordering := seed%2 == 0
	var l fakeLog
	q := NewQueue(QueueConfig{KeyOrdering: ordering}, 0)
	shadow := NewQueue(QueueConfig{KeyOrdering: ordering}, 0)
	type held struct {
		QueueLease
		key string
	}
	var holding []held
	acked := map[int64]bool{}
	now := int64(0)
	keyOf := map[int64]string{}
	// kept counts each record's leases less those released.
	kept := map[int64]int{}
	checked := int64(0)
	leases := uint64(0) // the last lease number
	for step := 0; step < 2000 || len(acked) < len(l); step++ {
		if step > 20000 {
			t.Fatalf("not every record acked: %d of %d; holding %d\n%.2000s", len(acked), len(l), len(holding), dumpQueue(q))
		}
		now += int64(rng.IntN(300))
		switch n := rng.IntN(10); {
		case n < 2 && step < 2000:
			for range rng.IntN(5) + 1 {
				r := QueueRecord{Offset: int64(len(l))}
				if rng.IntN(3) > 0 {
					k := fmt.Sprint("k", rng.IntN(5))
					r.Key = []byte(k)
					keyOf[r.Offset] = k
				}
				if rng.IntN(5) == 0 {
					r.DeliverAt = now + int64(rng.IntN(5000))
				}
				l = append(l, r)
			}
		case n < 5:
			vis := int64(rng.IntN(3000) + 100)
			max := rng.IntN(4) + 1
			got := q.Lease(now, max, vis, leases+1, l.from(q.Next()))
			want := shadow.Lease(now, max, vis, leases+1, l.from(shadow.Next()))
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("step %d: rebuilt group leased %v, original %v", step, want, got)
			}
			for _, x := range got {
				if x.Lease != leases+1 {
					t.Fatalf("step %d: %d leased with number %d; want %d", step, x.Offset, x.Lease, leases+1)
				}
				leases++
				rec := l[x.Offset]
				if rec.DeliverAt > now {
					t.Fatalf("step %d: %d leased at %d before its deliver-at %d", step, x.Offset, now, rec.DeliverAt)
				}
				if acked[x.Offset] {
					t.Fatalf("step %d: acked record %d leased again", step, x.Offset)
				}
				for _, h := range holding {
					if h.Offset == x.Offset && h.Deadline > now {
						t.Fatalf("step %d: %d leased while its lease until %d holds", step, x.Offset, h.Deadline)
					}
				}
				if ordering && keyOf[x.Offset] != "" {
					for off := range x.Offset {
						if keyOf[off] == keyOf[x.Offset] && !acked[off] {
							t.Fatalf("step %d: %d (key %s) leased while %d is unsettled", step, x.Offset, keyOf[x.Offset], off)
						}
					}
				}
				if kept[x.Offset]++; x.Attempt != kept[x.Offset] {
					t.Fatalf("step %d: %d leased at attempt %d; want %d", step, x.Offset, x.Attempt, kept[x.Offset])
				}
				// An older lease of the record is lost: forget it.
				holding = slices.DeleteFunc(holding, func(h held) bool { return h.Offset == x.Offset })
				holding = append(holding, held{QueueLease: x, key: keyOf[x.Offset]})
			}
		case len(holding) > 0:
			i := rng.IntN(len(holding))
			h := holding[i]
			holding = append(holding[:i], holding[i+1:]...)
			s := Settle{Kind: Ack, Offset: h.Offset, Attempt: h.Attempt, Lease: h.Lease}
			switch rng.IntN(7) {
			case 0:
				s.Kind, s.Duration = Nack, int64(rng.IntN(1000))
			case 2:
				s.Kind, s.Duration = Release, h.Deadline
			case 1:
				s.Kind, s.Duration = Extend, int64(rng.IntN(1000))
				holding = append(holding, h)
			}
			err := q.Settle(now, s)
			if err2 := shadow.Settle(now, s); fmt.Sprint(err) != fmt.Sprint(err2) {
				t.Fatalf("step %d: rebuilt group settled with %v, original %v", step, err2, err)
			}
			if err == nil && s.Kind == Ack {
				if acked[h.Offset] {
					t.Fatalf("step %d: %d acked twice", step, h.Offset)
				}
				acked[h.Offset] = true
			}
			if s.Kind == Release && err == nil {
				kept[h.Offset]--
			}
			if s.Kind == Extend && err == nil {
				holding[len(holding)-1].Deadline = now + s.Duration
			}
		}
		if rng.IntN(50) == 0 {
			hdr, recs := shadow.Encode()
			var err error
			shadow, err = DecodeQueue(hdr, func(yield func(int64, []byte) bool) {
				for _, c := range recs {
					if !yield(c.Offset, c.Value) {
						return
					}
				}
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if step%10 != 0 {
			continue
		}
		if a, b := dumpQueue(q), dumpQueue(shadow); a != b {
			t.Fatalf("step %d: rebuilt state differs:\n%s\noriginal\n%s", step, b, a)
		}
		for ; checked < q.start; checked++ {
			if !acked[checked] {
				t.Fatalf("step %d: start %d passed unacked %d", step, q.start, checked)
			}
		}
	}
}

// TestQueueLeaseReadsNoFurther checks that Lease asks recs for no record
// after the one that fills the lease, reaches the scan limit or fills the
// group: each record asked for may cost the owner a read of its log.
func TestQueueLeaseReadsNoFurther(t *testing.T) {
	counted := func(l fakeLog, from int64, n *int) iter.Seq[QueueRecord] {
		return func(yield func(QueueRecord) bool) {
			for r := range l.from(from) {
				*n++
				if !yield(r) {
					return
				}
			}
		}
	}
	newLog := func(n int, deliverAt int64) fakeLog {
		l := make(fakeLog, n)
		for i := range l {
			l[i] = QueueRecord{Offset: int64(i), DeliverAt: deliverAt}
		}
		return l
	}

	q := NewQueue(QueueConfig{}, 0)
	l := newLog(5, 0)
	var n int
	if got := q.Lease(0, 2, 1000, 1, counted(l, q.Next(), &n)); len(got) != 2 || n != 2 {
		t.Fatalf("lease of 2 from 5 records: %d leases, %d records read; want 2 and 2", len(got), n)
	}

	// Records that wait for a deliver-at time are looked at, not leased.
	q = NewQueue(QueueConfig{}, 0)
	l = newLog(MaxQueueUnsettled+10, 1000)
	for i := 0; !q.Full(); i++ {
		n = 0
		q.Lease(0, 1, 1000, 1, counted(l, q.Next(), &n))
		if want := min(QueueScanLimit, MaxQueueUnsettled-i*QueueScanLimit); n != want {
			t.Fatalf("lease %d: %d records read; want %d", i, n, want)
		}
	}
	n = 0
	q.Lease(0, 1, 1000, 1, counted(l, q.Next(), &n))
	if n != 0 {
		t.Fatalf("lease of a full group: %d records read; want 0", n)
	}
}
