package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/record"
)

// testLogger discards messages unless RUNNEL_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("RUNNEL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

// loopbackAddrs returns n loopback addresses with ports the OS had free.
func loopbackAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l.Addr().String())
		l.Close()
	}
	return out
}

// openBrokers starts an n-node cluster of in-process brokers on loopback
// addresses, closed when the test ends, and returns them by node id with
// their addresses in node order.
func openBrokers(t *testing.T, n int, logger *slog.Logger) (map[int32]*Broker, []string) {
	t.Helper()
	brokers, addrs, _ := openBrokersReopenable(t, n, logger)
	return brokers, addrs
}

// openBrokersReopenable is openBrokers, and also returns reopen, which
// opens node id again on its data folder and address (once the test closed
// it) and puts it into the map.
func openBrokersReopenable(t *testing.T, n int, logger *slog.Logger) (brokers map[int32]*Broker, addrs []string, reopen func(id int32)) {
	t.Helper()
	addrs = loopbackAddrs(t, n)
	peers := map[int32]string{}
	dirs := map[int32]string{}
	for i, a := range addrs {
		peers[int32(i+1)] = a
		dirs[int32(i+1)] = t.TempDir()
	}
	brokers = map[int32]*Broker{}
	reopen = func(id int32) {
		t.Helper()
		b, err := Open(dirs[id], Options{NodeID: id, Cluster: peers, NoSync: true, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		brokers[id] = b
		t.Cleanup(func() { b.Close() })
	}
	for id := range peers {
		reopen(id)
	}
	return brokers, addrs, reopen
}

// clientWithTopic returns a client of the brokers at addrs, closed when the
// test ends, once it has created topic name; it retries the creation while
// the cluster elects its controller.
func clientWithTopic(t *testing.T, ctx context.Context, addrs []string, name string, partitions, replicas int) (*client.Client, client.TopicInfo) {
	t.Helper()
	c, err := client.New(ctx, client.Brokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var info client.TopicInfo
	eventually(t, ctx, "the topic to be created", 30*time.Second, func() (bool, string) {
		info, err = c.CreateTopic(ctx, name, partitions, replicas, nil)
		return err == nil, fmt.Sprint(err)
	})
	return c, info
}

// eventually polls cond until it holds or the deadline passes; it reports
// the last reason cond gave.
func eventually(t *testing.T, ctx context.Context, what string, within time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	why := ""
	for {
		ok, reason := cond()
		if ok {
			return
		}
		why = reason
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("timed out after %s waiting for %s: %s", within, what, why)
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ackedRecord is a record the cluster acknowledged.
type ackedRecord struct {
	partition int32
	offset    int64
}

// loadWriter produces small batches until stopped and keeps what was
// acknowledged, by value.
type loadWriter struct {
	c     *client.Client
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	acked map[string]ackedRecord
	fails int
}

func startLoad(ctx context.Context, c *client.Client, topic string) *loadWriter {
	w := &loadWriter{c: c, stop: make(chan struct{}), done: make(chan struct{}), acked: map[string]ackedRecord{}}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			recs := make([]*client.Record, 10)
			for j := range recs {
				recs[j] = &client.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", (10*i+j)%17), Value: fmt.Appendf(nil, "load-%d-%d", i, j)}
			}
			pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			err := c.ProduceSync(pctx, recs...)
			cancel()
			w.mu.Lock()
			if err != nil {
				w.fails++
			} else {
				for _, r := range recs {
					w.acked[string(r.Value)] = ackedRecord{r.Partition, r.Offset}
				}
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *loadWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

func (w *loadWriter) finish() (map[string]ackedRecord, int) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked, w.fails
}

// hostedValues reads every record of partition id from node b's own
// replica: value → offset.
func hostedValues(t *testing.T, b *Broker, id log.ID) map[string]int64 {
	t.Helper()
	b.cluster.catalog.mu.Lock()
	r, ok := b.cluster.catalog.hosted[id]
	b.cluster.catalog.mu.Unlock()
	if !ok {
		t.Fatalf("node %d hosts no replica of %v", b.NodeID(), id)
	}
	out := map[string]int64{}
	for from := r.Start(); from < r.End(); {
		bs, err := r.Read(from, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, bt := range bs {
			recs, err := record.Batch(bt).Records()
			if err != nil {
				t.Fatal(err)
			}
			for _, rec := range recs {
				out[string(rec.Value)] = rec.Offset
			}
			from = record.Batch(bt).NextOffset()
		}
	}
	return out
}

// TestDecommissionUnderLoad runs three nodes on real sockets with a topic
// of three partitions on all three, adds a fourth node and removes node 1
// while a writer keeps producing: node 1's replicas move to the other
// nodes, every acknowledged record is on each replica of the new sets,
// node 1 leaves the cluster state and the controller group, leaders are
// spread over the nodes left, and reads and writes go on.
func TestDecommissionUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a four-node cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	addrs := loopbackAddrs(t, 4)
	peers := map[int32]string{}
	for i, a := range addrs[:3] {
		peers[int32(i+1)] = a
	}
	quiet := testLogger()
	brokers := map[int32]*Broker{}
	open := func(id int32, peers map[int32]string) {
		b, err := Open(t.TempDir(), Options{NodeID: id, Cluster: peers, NoSync: true, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		brokers[id] = b
		t.Cleanup(func() { b.Close() })
	}
	for id := range int32(3) {
		open(id+1, peers)
	}
	c, info := clientWithTopic(t, ctx, addrs[:3], "m", 3, 3)
	// Enough data that moving it takes a while.
	first := make([]*client.Record, 3000)
	pad := strings.Repeat("x", 500)
	for i := range first {
		first[i] = &client.Record{Topic: "m", Key: fmt.Appendf(nil, "k%d", i%17), Value: fmt.Appendf(nil, "first-%d-%s", i, pad)}
	}
	if err := c.ProduceSync(ctx, first...); err != nil {
		t.Fatal(err)
	}

	// Node 4 starts with the running nodes in its --cluster: it finds them
	// running and waits to be added instead of bootstrapping.
	all := map[int32]string{4: addrs[3]}
	for id, a := range peers {
		all[id] = a
	}
	open(4, all)
	if err := c.AddNode(ctx, client.Node{ID: 4, Addr: addrs[3]}); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "node 4 to register", 30*time.Second, func() (bool, string) {
		p, err := c.ClusterPlacement(ctx, "")
		_, ok := p.FindNode(4)
		return err == nil && ok, fmt.Sprint(p.Nodes, err)
	})

	w := startLoad(ctx, c, "m")
	eventually(t, ctx, "writes before the removal", 30*time.Second, func() (bool, string) { return w.count() >= 100, "" })
	before := w.count()
	st, err := c.DecommissionNode(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Draining || st.DrainReplicas != 3 {
		t.Fatalf("node 1 after the removal started: %+v", st)
	}
	// Progress only goes forward, and the node leaves.
	lastLeft := 3
	eventually(t, ctx, "node 1 to leave", 90*time.Second, func() (bool, string) {
		p, err := c.ClusterPlacement(ctx, "")
		if err != nil {
			return false, err.Error()
		}
		n, ok := p.FindNode(1)
		if !ok {
			return true, ""
		}
		if n.Replicas > lastLeft {
			t.Errorf("node 1 holds %d replicas after %d", n.Replicas, lastLeft)
		}
		lastLeft = n.Replicas
		return false, fmt.Sprintf("node 1: %+v; moves %+v", n, p.Moves)
	})
	t.Logf("%d records acknowledged while node 1 was being removed", w.count()-before)
	eventually(t, ctx, "writes after the removal", 30*time.Second, func() (bool, string) { return w.count() >= 100+200, fmt.Sprint(w.count()) })
	acked, fails := w.finish()
	t.Logf("%d records acknowledged under load, %d batches failed", len(acked), fails)
	for _, r := range first {
		acked[string(r.Value)] = ackedRecord{r.Partition, r.Offset}
	}

	// The state and the controller group are nodes 2, 3 and 4.
	p, err := c.ClusterPlacement(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var ids []int32
	for _, n := range p.Nodes {
		ids = append(ids, n.ID)
		if n.Draining || n.Replicas != 3 {
			t.Errorf("node %+v: want 3 replicas, not draining", n)
		}
	}
	if !slices.Equal(ids, []int32{2, 3, 4}) || len(p.Moves) != 0 {
		t.Fatalf("placement after the removal: nodes %v, moves %+v", ids, p.Moves)
	}
	ctrl := brokers[p.Controller]
	cfg := ctrl.cluster.ctrl.raft.GetConfiguration()
	if err := cfg.Error(); err != nil {
		t.Fatal(err)
	}
	var voters []raft.ServerID
	for _, s := range cfg.Configuration().Servers {
		voters = append(voters, s.ID)
	}
	slices.Sort(voters)
	if !slices.Equal(voters, []raft.ServerID{"2", "3", "4"}) {
		t.Fatalf("controller group %v, want 2, 3, 4", voters)
	}
	// Node 1 runs no replica and keeps no data, once it has dropped the
	// logs of the replicas it stopped.
	eventually(t, ctx, "node 1 to drop its replicas", 30*time.Second, func() (bool, string) {
		brokers[1].cluster.catalog.mu.Lock()
		left := len(brokers[1].cluster.catalog.hosted)
		brokers[1].cluster.catalog.mu.Unlock()
		ids, err := brokers[1].store.IDs()
		return err == nil && left == 0 && len(ids) == 0, fmt.Sprintf("node 1 still hosts %d replicas, logs %v (%v)", left, ids, err)
	})

	// Each partition is on three of nodes 2, 3 and 4, with every
	// acknowledged record at its offset on each replica.
	topicID := brokers[2].cluster.catalog.topicView(mustTopic(t, brokers[2], "m")).meta.ID
	for part := range int32(3) {
		id := log.ID{Topic: topicID, Partition: uint32(part)}
		var ref map[string]int64
		eventually(t, ctx, fmt.Sprintf("the replicas of partition %d to agree", part), 30*time.Second, func() (bool, string) {
			var ends []int64
			for _, n := range []int32{2, 3, 4} {
				brokers[n].cluster.catalog.mu.Lock()
				r, ok := brokers[n].cluster.catalog.hosted[id]
				brokers[n].cluster.catalog.mu.Unlock()
				if !ok {
					return false, fmt.Sprintf("node %d hosts no replica", n)
				}
				ends = append(ends, r.End())
			}
			return ends[0] == ends[1] && ends[1] == ends[2], fmt.Sprint(ends)
		})
		for _, n := range []int32{2, 3, 4} {
			vals := hostedValues(t, brokers[n], id)
			if ref == nil {
				ref = vals
			} else if len(vals) != len(ref) {
				t.Fatalf("partition %d: node %d holds %d records, another replica %d", part, n, len(vals), len(ref))
			}
			for v, a := range acked {
				if a.partition != part {
					continue
				}
				if off, ok := vals[v]; !ok || off != a.offset {
					t.Fatalf("partition %d on node %d: acknowledged %q at offset %d, found at %d (present %v)", part, n, v, a.offset, off, ok)
				}
			}
		}
	}

	// Every replica of the new sets votes.
	for part := range int32(3) {
		id := log.ID{Topic: topicID, Partition: uint32(part)}
		brokers[2].cluster.catalog.mu.Lock()
		r := brokers[2].cluster.catalog.hosted[id].(*hostedReplica)
		brokers[2].cluster.catalog.mu.Unlock()
		m, err := r.Membership()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, mb := range m.Members {
			if !mb.Voter {
				t.Errorf("partition %d: %s is not a voter", part, mb.ID)
			}
			got = append(got, mb.ID)
		}
		slices.Sort(got)
		if !slices.Equal(got, []string{"2", "3", "4"}) {
			t.Errorf("partition %d raft group %v, want 2, 3, 4", part, got)
		}
	}

	// Leaders move to the preferred replicas: one partition per node.
	eventually(t, ctx, "leaders spread over nodes 2, 3 and 4", 30*time.Second, func() (bool, string) {
		info, err = c.DescribeTopic(ctx, "m")
		if err != nil {
			return false, err.Error()
		}
		leads := map[int32]int{}
		for _, pi := range info.Partitions {
			if slices.Contains(pi.Replicas, 1) || len(pi.Replicas) != 3 {
				t.Fatalf("partition %d replicas %v", pi.Partition, pi.Replicas)
			}
			leads[pi.Leader]++
		}
		return len(leads) == 3 && leads[1] == 0 && leads[0] == 0, fmt.Sprint(info.Partitions)
	})

	// Node 1 can go; the cluster reads and writes on.
	if err := brokers[1].Close(); err != nil {
		t.Fatal(err)
	}
	c2, err := client.New(ctx, client.Brokers(addrs[1:]...))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := c2.ProduceSync(ctx, &client.Record{Topic: "m", Value: []byte("after")}); err != nil {
		t.Fatal(err)
	}
	total := 0
	for part := range int32(3) {
		offs, err := c2.ListOffsets(ctx, "m", part, client.End())
		if err != nil {
			t.Fatal(err)
		}
		if offs.End == 0 {
			t.Fatalf("partition %d is empty: the keys should spread the records", part)
		}
		rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
		last := int64(-1)
		for r, err := range c2.Consume(rctx, "m", part, client.Start()) {
			if err != nil {
				t.Fatalf("partition %d after offset %d of %v: %v", part, last, offs, err)
			}
			total++
			last = r.Offset
			if r.Offset+1 == offs.End {
				break
			}
		}
		rcancel()
		if last+1 != offs.End {
			t.Fatalf("partition %d: read up to offset %d, end %d", part, last, offs.End)
		}
	}
	if total < len(acked)+1 {
		t.Fatalf("read %d records back, want at least the %d acknowledged", total, len(acked)+1)
	}
}

func mustTopic(t *testing.T, b *Broker, name string) clusterTopic {
	t.Helper()
	st, _ := b.cluster.ctrl.fsm.view()
	ct, ok := st.Topics[name]
	if !ok {
		t.Fatalf("no topic %q", name)
	}
	return ct
}

// TestReassignAndRefusals checks the admin answers a person sees: a
// removal that cannot be done says why and what to do, and a reassignment
// to fewer replicas is the way out.
func TestReassignAndRefusals(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, addrs := openBrokers(t, 3, slog.New(slog.DiscardHandler))
	c, _ := clientWithTopic(t, ctx, addrs, "full", 1, 3)
	for i := range 50 {
		if err := c.ProduceSync(ctx, &client.Record{Topic: "full", Value: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.DecommissionNode(ctx, 2)
	if !errors.Is(err, client.ErrInvalidArgument) || !strings.Contains(err.Error(), "replication factor 3") || !strings.Contains(err.Error(), "runnel topic reassign full --partition 0") {
		t.Fatalf("removing a node every partition needs: %v", err)
	}
	if _, _, err := c.ReassignPartition(ctx, "full", 0, []int32{1, 9}); !errors.Is(err, client.ErrInvalidArgument) {
		t.Fatalf("reassign to an unknown node: %v", err)
	}
	if _, _, err := c.ReassignPartition(ctx, "nope", 0, []int32{1}); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("reassign an unknown topic: %v", err)
	}
	info, err := c.DescribeTopic(ctx, "full")
	if err != nil {
		t.Fatal(err)
	}
	var rest []int32
	for _, r := range info.Partitions[0].Replicas {
		if r != 2 {
			rest = append(rest, r)
		}
	}
	// To two replicas, back to three with node 2 (empty now) as the
	// preferred leader, then to two again in the other order: after each
	// move the partition's first replica leads.
	for _, rs := range [][]int32{rest, append([]int32{2}, rest...), {rest[1], rest[0]}} {
		pi, move, err := c.ReassignPartition(ctx, "full", 0, rs)
		if err != nil {
			t.Fatal(err)
		}
		// A move that only drops a replica can be over before the
		// answer is read, and then no move is reported.
		if !slices.Equal(pi.Replicas, rs) || (move == nil && len(rs) > 2) {
			t.Fatalf("reassigned to %v: %+v, move %+v", rs, pi, move)
		}
		eventually(t, ctx, fmt.Sprintf("the move to %v to end", rs), 30*time.Second, func() (bool, string) {
			p, err := c.ClusterPlacement(ctx, "")
			_, moving := p.FindMove("full", 0)
			return err == nil && !moving, fmt.Sprint(p.Moves, err)
		})
		eventually(t, ctx, fmt.Sprintf("node %d to lead", rs[0]), 30*time.Second, func() (bool, string) {
			info, err := c.DescribeTopic(ctx, "full")
			return err == nil && info.Partitions[0].Leader == rs[0], fmt.Sprint(info.Partitions, err)
		})
	}
	// Node 2 dropped its replica; now it can be removed.
	if _, err := c.DecommissionNode(ctx, 2); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "node 2 to leave", 30*time.Second, func() (bool, string) {
		p, err := c.ClusterPlacement(ctx, "")
		_, ok := p.FindNode(2)
		return err == nil && !ok, fmt.Sprint(p.Nodes, err)
	})
	n := 0
	for r, err := range c.Consume(ctx, "full", 0, client.Start()) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; r.Offset == 49 {
			break
		}
	}
	if n != 50 {
		t.Fatalf("read %d records, want 50", n)
	}
}

// removeStopped closes node id's broker b, removes the node with c, and
// waits until the controller leader no longer lists it.
func removeStopped(t *testing.T, ctx context.Context, c *client.Client, b *Broker, id int32) {
	t.Helper()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, fmt.Sprintf("the removal of node %d to start", id), 30*time.Second, func() (bool, string) {
		_, err := c.DecommissionNode(ctx, id)
		return err == nil, fmt.Sprint(err)
	})
	eventually(t, ctx, fmt.Sprintf("node %d to leave", id), 60*time.Second, func() (bool, string) {
		p, err := c.ClusterPlacement(ctx, "")
		n, ok := p.FindNode(id)
		return err == nil && !ok, fmt.Sprintf("%+v %+v %v", n, p.Moves, err)
	})
}

// TestDecommissionDeadNode removes a node that has stopped: its replicas
// are rebuilt on the node left over from the others' copies, and it leaves
// the cluster without ever coming back.
func TestDecommissionDeadNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a four-node cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	brokers, addrs := openBrokers(t, 4, testLogger())
	c, _ := clientWithTopic(t, ctx, addrs[1:], "d", 4, 3)
	recs := make([]*client.Record, 400)
	for i := range recs {
		recs[i] = &client.Record{Topic: "d", Key: fmt.Appendf(nil, "k%d", i%11), Value: fmt.Appendf(nil, "v%d", i)}
	}
	if err := c.ProduceSync(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	removeStopped(t, ctx, c, brokers[1], 1)
	info, err := c.DescribeTopic(ctx, "d")
	if err != nil {
		t.Fatal(err)
	}
	for _, pi := range info.Partitions {
		if slices.Contains(pi.Replicas, 1) || len(pi.Replicas) != 3 {
			t.Fatalf("partition %d replicas %v", pi.Partition, pi.Replicas)
		}
	}
	seen := map[string]bool{}
	for part := range int32(4) {
		offs, err := c.ListOffsets(ctx, "d", part, client.End())
		if err != nil {
			t.Fatal(err)
		}
		if offs.End == 0 {
			continue
		}
		for r, err := range c.Consume(ctx, "d", part, client.Start()) {
			if err != nil {
				t.Fatal(err)
			}
			seen[string(r.Value)] = true
			if r.Offset+1 == offs.End {
				break
			}
		}
	}
	for _, r := range recs {
		if !seen[string(r.Value)] {
			t.Fatalf("acknowledged %q not read back", r.Value)
		}
	}
}
