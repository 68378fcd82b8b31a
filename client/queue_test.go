package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/client"
)

func produceJobs(t *testing.T, c *client.Client, topic string, n int, key func(i int) []byte) {
	t.Helper()
	recs := make([]*client.Record, n)
	for i := range recs {
		recs[i] = &client.Record{Topic: topic, Value: []byte(fmt.Sprint(i))}
		if key != nil {
			recs[i].Key = key(i)
		}
	}
	if err := c.ProduceSync(testContext(t), recs...); err != nil {
		t.Fatal(err)
	}
}

func openQueue(t *testing.T, c *client.Client, group, topic string, opts client.QueueOptions) *client.Queue {
	t.Helper()
	q, err := c.Queue(group, topic, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

type tpo struct {
	p   int32
	off int64
}

// TestQueueSharesWork runs more consumers than partitions: each record is
// delivered once, to one of them, and every consumer gets work.
func TestQueueSharesWork(t *testing.T) {
	b := openBroker(t, "")
	c := newClient(t, b)
	createTopic(t, c, "jobs", 2, nil)
	const n = 600
	produceJobs(t, c, "jobs", n, func(i int) []byte { return []byte(fmt.Sprint(i)) })
	ctx := testContext(t)
	var (
		mu    sync.Mutex
		seen  = map[tpo]int{}
		per   = make([]int, 4)
		wg    sync.WaitGroup
		total int
	)
	allDone := make(chan struct{})
	for i := range per {
		q := openQueue(t, c, "workers", "jobs", client.QueueOptions{Prefetch: 8})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				d, err := q.Next(ctx)
				if err != nil {
					return
				}
				if err := q.Ack(ctx, d); err != nil {
					t.Errorf("ack %d/%d: %v", d.Partition, d.Offset, err)
				}
				mu.Lock()
				seen[tpo{d.Partition, d.Offset}]++
				per[i]++
				total++
				if total == n {
					close(allDone)
				}
				mu.Unlock()
				if d.Attempt != 1 {
					t.Errorf("%d/%d attempt %d", d.Partition, d.Offset, d.Attempt)
				}
				// Give the other consumers a turn at the records.
				time.Sleep(time.Millisecond)
			}
		}()
	}
	select {
	case <-allDone:
	case <-ctx.Done():
		t.Fatalf("only %d of %d records acked", total, n)
	}
	mu.Lock()
	defer mu.Unlock()
	for k, v := range seen {
		if v != 1 {
			t.Errorf("%v delivered %d times", k, v)
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct records, want %d", len(seen), n)
	}
	for i, v := range per {
		if v == 0 {
			t.Errorf("consumer %d got no work: %v", i, per)
		}
	}
}

// TestQueueRedelivery shows a lease expiring (the record comes back with
// attempt 2, and the late ack of the first delivery is refused), a nack's
// delay, and the dead letter written after MaxDeliveries.
func TestQueueRedelivery(t *testing.T) {
	b := openBroker(t, "")
	c := newClient(t, b)
	createTopic(t, c, "t", 1, nil)
	createTopic(t, c, "t2", 1, nil)
	produceJobs(t, c, "t", 1, nil)
	produceJobs(t, c, "t2", 1, nil)
	ctx := testContext(t)

	a := openQueue(t, c, "g", "t", client.QueueOptions{Visibility: 200 * time.Millisecond, Prefetch: 1})
	d1, err := a.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d1.Attempt != 1 || string(d1.Value) != "0" {
		t.Fatalf("first delivery: attempt %d value %q", d1.Attempt, d1.Value)
	}
	// Not settled: after the lease ends the record comes back.
	d2, err := a.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d2.Attempt != 2 || d2.Offset != d1.Offset {
		t.Fatalf("redelivery: offset %d attempt %d", d2.Offset, d2.Attempt)
	}
	if !time.Now().After(d1.LeaseUntil) {
		t.Fatalf("redelivered before the first lease ended at %s", d1.LeaseUntil)
	}
	if err := a.Ack(ctx, d1); !errors.Is(err, client.ErrLeaseLost) {
		t.Fatalf("ack of the expired delivery: %v, want ErrLeaseLost", err)
	}
	a.Close()

	q := openQueue(t, c, "g", "t2", client.QueueOptions{Visibility: time.Minute, Prefetch: 1, MaxDeliveries: 2})
	d, err := q.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nacked := time.Now()
	if err := q.Nack(ctx, d, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	d, err = q.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Attempt != 2 || time.Since(nacked) < 300*time.Millisecond {
		t.Fatalf("after the nack: attempt %d, %s after a nack of 300ms", d.Attempt, time.Since(nacked))
	}
	// The third delivery is over MaxDeliveries: it goes to the dead-letter
	// topic without reaching Next.
	if err := q.Nack(ctx, d, 0); err != nil {
		t.Fatal(err)
	}
	// The queue dead-letters in the background: wait for the topic.
	for {
		offs, err := c.ListOffsets(ctx, "t2.dlq", 0, client.End())
		if err == nil && offs.Offset > 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no dead letter: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var dl *client.Record
	for r, err := range c.Consume(ctx, "t2.dlq", 0, client.Start()) {
		if err != nil {
			t.Fatal(err)
		}
		dl = r.Clone()
		break
	}
	if string(dl.Value) != "0" {
		t.Fatalf("dead letter value %q", dl.Value)
	}
	hdr := map[string]string{}
	for _, h := range dl.Headers {
		hdr[h.Key] = string(h.Value)
	}
	if hdr[client.DLQAttemptsHeader] != "3" || hdr[client.DLQGroupHeader] != "g" || hdr[client.DLQOffsetHeader] != "0" || hdr[client.DLQReasonHeader] == "" {
		t.Fatalf("dead letter headers %v", hdr)
	}
	// The record is settled: nothing more to lease.
	nctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if d, err := q.Next(nctx); err == nil {
		t.Fatalf("delivery after the dead letter: %d attempt %d", d.Offset, d.Attempt)
	}
}

// TestQueueRejectAndDeliverAt rejects a record twice (one dead letter) and
// holds back a record with a deliver-at time.
func TestQueueRejectAndDeliverAt(t *testing.T) {
	b := openBroker(t, "")
	c := newClient(t, b)
	createTopic(t, c, "t", 1, nil)
	ctx := testContext(t)
	at := time.Now().Add(500 * time.Millisecond)
	if err := c.ProduceSync(ctx,
		&client.Record{Topic: "t", Value: []byte("later"), Headers: []client.Header{client.DeliverAt(at)}},
		&client.Record{Topic: "t", Value: []byte("now")},
	); err != nil {
		t.Fatal(err)
	}
	q := openQueue(t, c, "g", "t", client.QueueOptions{})
	d, err := q.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(d.Value) != "now" {
		t.Fatalf("first delivery %q, want the record without a deliver-at time", d.Value)
	}
	for range 2 {
		if err := q.Reject(ctx, d, client.DeadLetter{Reason: "bad input", Value: []byte("dead")}); err != nil {
			t.Fatal(err)
		}
	}
	d, err = q.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(d.Value) != "later" || time.Now().Before(at.Truncate(time.Millisecond)) {
		t.Fatalf("second delivery %q at %s, deliver-at %s", d.Value, time.Now(), at)
	}
	if err := q.Ack(ctx, d); err != nil {
		t.Fatal(err)
	}
	offs, err := c.ListOffsets(ctx, "t.dlq", 0, client.End())
	if err != nil {
		t.Fatal(err)
	}
	if offs.Offset != 1 {
		t.Fatalf("dead-letter topic holds %d records, want 1", offs.Offset)
	}
}

// TestQueueKeyOrdering checks that with KeyOrdering no two records of a
// key are in flight at once and each key's records come in offset order,
// across several consumers.
func TestQueueKeyOrdering(t *testing.T) {
	b := openBroker(t, "")
	c := newClient(t, b)
	createTopic(t, c, "t", 1, nil)
	const n = 300
	produceJobs(t, c, "t", n, func(i int) []byte { return []byte(fmt.Sprint("k", i%5)) })
	ctx := testContext(t)
	var (
		mu     sync.Mutex
		acking = map[int64]bool{} // offsets whose ack has been sent
		last   = map[string]int64{}
		count  int
	)
	done := make(chan struct{})
	qctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// The consumers end before the test does: stop ends their Next.
	defer wg.Wait()
	defer stop()
	for range 3 {
		q := openQueue(t, c, "g", "t", client.QueueOptions{KeyOrdering: true, Prefetch: 4})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				d, err := q.Next(qctx)
				if err != nil {
					return
				}
				// The key's previous record must be acked (the ack sent)
				// before this one comes, and come before it.
				k := string(d.Key)
				mu.Lock()
				if l, ok := last[k]; ok && (l >= d.Offset || !acking[l]) {
					t.Errorf("%d: key %s after %d (ack sent: %t)", d.Offset, k, l, acking[l])
				}
				last[k] = d.Offset
				mu.Unlock()
				time.Sleep(time.Millisecond)
				mu.Lock()
				acking[d.Offset] = true
				mu.Unlock()
				if err := q.Ack(ctx, d); err != nil {
					t.Error(err)
				}
				mu.Lock()
				count++
				if count == n {
					close(done)
				}
				mu.Unlock()
			}
		}()
	}
	select {
	case <-done:
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%d of %d acked", count, n)
	}
}

// TestQueueCloseReleasesUnseen restarts a consumer again and again while
// it holds records leased ahead of Next: those records are handed back
// without counting a delivery, so they are not dead-lettered however
// often the consumer restarts, while the record Next returned before each
// Close keeps its count.
func TestQueueCloseReleasesUnseen(t *testing.T) {
	b := openBroker(t, "")
	c := newClient(t, b)
	createTopic(t, c, "t", 1, nil)
	const n = 5
	produceJobs(t, c, "t", n, nil)
	ctx := testContext(t)
	opts := client.QueueOptions{Prefetch: n, MaxDeliveries: 2, Visibility: time.Minute}
	leased := func() int {
		ps, err := c.QueueGroups(ctx, "g")
		if err != nil || len(ps) != 1 {
			return -1
		}
		return ps[0].Leased
	}
	// seen counts the deliveries Next returned, per offset.
	seen := map[int64]int{}
	acked := 0
	for restart := range 4 {
		q := openQueue(t, c, "g", "t", opts)
		d, err := q.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := seen[d.Offset] + 1; d.Attempt != want {
			t.Fatalf("restart %d: %d at attempt %d, want %d", restart, d.Offset, d.Attempt, want)
		}
		seen[d.Offset]++
		if d.Attempt == opts.MaxDeliveries {
			if err := q.Ack(ctx, d); err != nil {
				t.Fatal(err)
			}
			acked++
		}
		// Every other record is leased ahead before the queue closes.
		waitFor(t, "records leased ahead", 10*time.Second, func() bool { return leased() == n-acked })
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		// Close releases what the consumer holds. Its cancelled long poll
		// may still take a record on the broker, which hands that lease
		// back, uncounted, once it sees the cancellation: wait for that
		// rather than for Close alone. The attempt checks above catch a
		// lease that used up a delivery.
		waitFor(t, fmt.Sprintf("restart %d: no record leased after Close", restart), 10*time.Second, func() bool { return leased() == 0 })
	}
	ps, err := c.QueueGroups(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	if got := ps[0].MaxDeliveries; got != 0 {
		t.Errorf("largest delivery count %d after the restarts, want 0", got)
	}
	// Nothing was dead-lettered: the records never seen come at attempt 1.
	q := openQueue(t, c, "g", "t", opts)
	for range n - acked {
		d, err := q.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if seen[d.Offset] != 0 || d.Attempt != 1 {
			t.Fatalf("%d delivered at attempt %d after %d deliveries seen", d.Offset, d.Attempt, seen[d.Offset])
		}
		if err := q.Ack(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
}

// TestQueueIdlePartitionsHoldNoPrefetch shows that a partition with
// nothing to lease does not hold up the others: with a prefetch of one
// record and three partitions, the long polls of the idle partitions
// leave the prefetch free, and all the records of partition 0 are
// delivered while partitions 1 and 2 each stay in the same long poll.
func TestQueueIdlePartitionsHoldNoPrefetch(t *testing.T) {
	// Long polls that outlast the test: a poll that ended would show as
	// another one started.
	defer client.SetLeaseWait(time.Hour)()
	b := openBroker(t, "")
	c := newClient(t, b, client.RecordPartitioner(client.ManualPartitioner()))
	createTopic(t, c, "t", 3, nil)
	ctx := testContext(t)
	q := openQueue(t, c, "g", "t", client.QueueOptions{Prefetch: 1})
	var polls []int64
	waitFor(t, "every partition in a long poll, the prefetch free", 10*time.Second, func() bool {
		if client.QueueFreeSlots(q) != 1 {
			return false
		}
		polls = client.QueuePolls(q)
		for _, n := range polls {
			if n%2 == 0 {
				return false
			}
		}
		return true
	})
	const n = 20
	recs := make([]*client.Record, n)
	for i := range recs {
		recs[i] = &client.Record{Topic: "t", Partition: 0, Value: []byte(fmt.Sprint(i))}
	}
	if err := c.ProduceSync(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		d, err := q.Next(ctx)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if d.Partition != 0 || d.Offset != int64(i) {
			t.Fatalf("got %d/%d, want 0/%d", d.Partition, d.Offset, i)
		}
		if err := q.Ack(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if got := client.QueuePolls(q); got[1] != polls[1] || got[2] != polls[2] {
		t.Errorf("long polls of partitions 1 and 2 went from %v to %v while partition 0's records were delivered", polls[1:], got[1:])
	}
}

// TestQueueVisibility checks that Visibility says the lease per delivery
// after defaults.
func TestQueueVisibility(t *testing.T) {
	b := openBroker(t, "")
	c := newClient(t, b)
	createTopic(t, c, "t", 1, nil)
	for _, tc := range []struct{ set, want time.Duration }{
		{0, 30 * time.Second},
		{5 * time.Second, 5 * time.Second},
	} {
		q := openQueue(t, c, "g", "t", client.QueueOptions{Visibility: tc.set})
		if got := q.Visibility(); got != tc.want {
			t.Errorf("Visibility() with QueueOptions.Visibility %v = %v, want %v", tc.set, got, tc.want)
		}
	}
}

// TestQueueNextRacingClose closes a queue while Next holds a delivery it
// took from the prefetch and has not claimed yet. Next must not hand the
// record out, and Close must release it, uncounted, rather than leave it
// leased until its visibility ends.
func TestQueueNextRacingClose(t *testing.T) {
	b := openBroker(t, "")
	c := newClient(t, b)
	createTopic(t, c, "t", 1, nil)
	produceJobs(t, c, "t", 1, nil)
	ctx := testContext(t)
	opts := client.QueueOptions{Prefetch: 1, Visibility: time.Hour}
	q := openQueue(t, c, "g", "t", opts)
	client.SetNextTook(q, func() {
		if err := q.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if d, err := q.Next(ctx); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Next racing Close = %v, %v; want ErrClosed", d, err)
	}
	ps, err := c.QueueGroups(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].Leased != 0 {
		t.Fatalf("after Close: %+v; want the record released", ps)
	}
	d, err := openQueue(t, c, "g", "t", opts).Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Offset != 0 || d.Attempt != 1 {
		t.Errorf("delivered %d at attempt %d after Close, want 0 at attempt 1", d.Offset, d.Attempt)
	}
}

// TestQueueNextSkipsExpiredLeases leaves records in a queue's prefetch
// until their leases end and another consumer has them: Next must not
// hand them out.
func TestQueueNextSkipsExpiredLeases(t *testing.T) {
	b := openBroker(t, "")
	c := newClient(t, b)
	createTopic(t, c, "t", 1, nil)
	ctx := testContext(t)
	const n = 3
	q := openQueue(t, c, "g", "t", client.QueueOptions{Prefetch: n, Visibility: 200 * time.Millisecond})
	produceJobs(t, c, "t", n, nil)
	waitFor(t, "the records leased ahead", 10*time.Second, func() bool { return client.QueuePrefetched(q) == n })
	// The leases end while the records wait; another consumer takes them.
	other := openQueue(t, c, "g", "t", client.QueueOptions{Prefetch: n, Visibility: time.Hour})
	for range n {
		d, err := other.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d.Attempt != 2 {
			t.Fatalf("other consumer got %d at attempt %d, want 2", d.Offset, d.Attempt)
		}
	}
	nctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if d, err := q.Next(nctx); !errors.Is(err, context.DeadlineExceeded) {
		if err == nil {
			t.Fatalf("Next handed out %d at attempt %d, its lease ended %s ago and another consumer holds it", d.Offset, d.Attempt, time.Since(d.LeaseUntil))
		}
		t.Fatalf("Next: %v; want no delivery", err)
	}
}

// TestQueueAckRacingClose closes a queue while an Ack is on its way to
// the broker: the Ack must finish, and Close must not nack the record.
func TestQueueAckRacingClose(t *testing.T) {
	b := openBroker(t, "")
	c := newClient(t, b)
	createTopic(t, c, "t", 1, nil)
	produceJobs(t, c, "t", 1, nil)
	ctx := testContext(t)
	q := openQueue(t, c, "g", "t", client.QueueOptions{Prefetch: 1, Visibility: time.Hour})
	d, err := q.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sending, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	client.SetSettleSending(q, func() {
		once.Do(func() {
			close(sending)
			<-release
		})
	})
	acked := make(chan error, 1)
	go func() { acked <- q.Ack(ctx, d) }()
	<-sending
	closed := make(chan error, 1)
	go func() { closed <- q.Close() }()
	waitFor(t, "Close to begin", 10*time.Second, func() bool {
		nctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		defer cancel()
		_, err := q.Next(nctx)
		return errors.Is(err, client.ErrClosed)
	})
	close(release)
	if err := <-acked; err != nil {
		t.Fatalf("Ack racing Close: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	ps, err := c.QueueGroups(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].Start != 1 || ps[0].Leased != 0 || ps[0].Ready != 0 {
		t.Fatalf("after an Ack racing Close: %+v; want the record settled", ps)
	}
}

// TestQueueDeadLetterOffLeaseLoop holds up the dead-lettering of a record
// past MaxDeliveries: the partition's other records must still reach
// Next, and the record is settled once its dead letter is written.
func TestQueueDeadLetterOffLeaseLoop(t *testing.T) {
	b := openBroker(t, "")
	c := newClient(t, b)
	createTopic(t, c, "t", 1, nil)
	produceJobs(t, c, "t", 1, nil)
	ctx := testContext(t)
	writing, release := make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	opts := client.QueueOptions{Prefetch: 2, MaxDeliveries: 1, Visibility: time.Hour,
		DeadLetterValue: func(d *client.Delivery, reason string) []byte {
			select {
			case writing <- struct{}{}:
			default:
			}
			<-release
			return []byte("dead")
		}}
	q := openQueue(t, c, "g", "t", opts)
	// Runs before q closes.
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	d, err := q.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Nack(ctx, d, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-writing:
	case <-ctx.Done():
		t.Fatal("the nacked record was not dead-lettered")
	}
	if err := c.ProduceSync(ctx, &client.Record{Topic: "t", Value: []byte("next")}); err != nil {
		t.Fatal(err)
	}
	nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	d, err = q.Next(nctx)
	if err != nil {
		t.Fatalf("Next while a dead letter is written: %v", err)
	}
	if d.Offset != 1 {
		t.Fatalf("Next = %d attempt %d, want 1", d.Offset, d.Attempt)
	}
	if err := q.Ack(ctx, d); err != nil {
		t.Fatal(err)
	}
	ps, err := c.QueueGroups(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].Start != 0 {
		t.Fatalf("before the dead letter is written: %+v; want record 0 unsettled", ps)
	}
	once.Do(func() { close(release) })
	waitFor(t, "record 0 settled", 10*time.Second, func() bool {
		ps, err := c.QueueGroups(ctx, "g")
		return err == nil && len(ps) == 1 && ps[0].Start == 2
	})
	offs, err := c.ListOffsets(ctx, "t.dlq", 0, client.End())
	if err != nil {
		t.Fatal(err)
	}
	if offs.Offset != 1 {
		t.Fatalf("dead-letter topic holds %d records, want 1", offs.Offset)
	}
}
