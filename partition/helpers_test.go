package partition_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/partition"
	"github.com/runnel-dev/runnel/record"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testLogger discards messages unless RUNNEL_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("RUNNEL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// waitTimeout bounds every wait for a condition in these tests.
const waitTimeout = 10 * time.Second

// waitFor polls cond until it holds, failing the test after waitTimeout.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// node is one replica's stores, which outlive the Replica on them.
type node struct {
	id      string
	addr    raft.ServerAddress
	trans   *raft.InmemTransport
	fs      vfs.FS
	noWAL   bool // the log store runs without a write-ahead log
	dbDir   string
	store   *log.Store
	log     *log.Log
	logs    raft.LogStore
	stable  raft.StableStore
	snapDir string
	r       *partition.Replica // nil while stopped
}

// cluster is a raft group of replicas over InmemTransport.
type cluster struct {
	t     testing.TB
	nodes []*node
	// cfg adjusts each replica's config.
	cfg func(*partition.ReplicaConfig)
}

// fastConfig is raft timing for tests, as raft's own inmemConfig but a
// little slower, so that the race detector on two cores does not cause
// elections.
func fastConfig(c *partition.ReplicaConfig) {
	c.HeartbeatTimeout = 100 * time.Millisecond
	c.ElectionTimeout = 100 * time.Millisecond
	c.LeaderLeaseTimeout = 50 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	c.Logger = testLogger()
}

var logID = log.ID{Topic: 1, Partition: 0}

// newCluster starts n bootstrapped replicas and waits for a leader.
func newCluster(t testing.TB, n int, cfg func(*partition.ReplicaConfig)) *cluster {
	t.Helper()
	c := &cluster{t: t, cfg: cfg}
	dir := t.TempDir()
	var servers []partition.Server
	for i := range n {
		nd := c.newNode(filepath.Join(dir, fmt.Sprint(i)), fmt.Sprintf("n%d", i), nil)
		servers = append(servers, partition.Server{ID: nd.id, Addr: string(nd.addr)})
	}
	c.connectAll()
	t.Cleanup(c.close)
	for _, nd := range c.nodes {
		c.start(nd, servers)
	}
	c.leader()
	return c
}

// newNode creates a node's stores; fs nil means the disk.
func (c *cluster) newNode(dir, id string, fs vfs.FS) *node {
	c.t.Helper()
	addr, trans := raft.NewInmemTransport(raft.ServerAddress(id))
	nd := &node{
		id: id, addr: addr, trans: trans, fs: fs,
		dbDir:   filepath.Join(dir, "db"),
		logs:    raft.NewInmemStore(),
		snapDir: filepath.Join(dir, "snap"),
	}
	nd.stable = nd.logs.(*raft.InmemStore)
	if fs != nil {
		nd.dbDir = "db"
	}
	c.openStore(nd)
	c.nodes = append(c.nodes, nd)
	return nd
}

func (c *cluster) openStore(nd *node) {
	c.t.Helper()
	s, err := log.Open(nd.dbDir, log.Options{FS: nd.fs, NoSync: true, NoWAL: nd.noWAL, RetentionInterval: -1, CacheBytes: 4 << 20, Logger: testLogger()})
	if err != nil {
		c.t.Fatal(err)
	}
	nd.store = s
	if nd.log, err = s.Log(logID); err != nil {
		c.t.Fatal(err)
	}
}

// connectAll connects every pair of transports both ways.
func (c *cluster) connectAll() {
	for _, a := range c.nodes {
		for _, b := range c.nodes {
			if a != b {
				a.trans.Connect(b.addr, b.trans)
			}
		}
	}
}

// isolate cuts nd off from every other node, both ways.
func (c *cluster) isolate(nd *node) {
	nd.trans.DisconnectAll()
	for _, o := range c.nodes {
		if o != nd {
			o.trans.Disconnect(nd.addr)
		}
	}
}

// start opens a replica on nd's stores.
func (c *cluster) start(nd *node, bootstrap []partition.Server) {
	c.t.Helper()
	cfg := partition.ReplicaConfig{
		ID:          nd.id,
		Log:         nd.log,
		LogStore:    nd.logs,
		StableStore: nd.stable,
		Transport:   nd.trans,
		SnapshotDir: nd.snapDir,
		Bootstrap:   bootstrap,
	}
	fastConfig(&cfg)
	if c.cfg != nil {
		c.cfg(&cfg)
	}
	cfg.Logger = cfg.Logger.With("node", nd.id)
	r, err := partition.OpenReplica(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	nd.r = r
}

// stop closes nd's replica; its stores stay.
func (c *cluster) stop(nd *node) {
	c.t.Helper()
	if err := nd.r.Close(); err != nil {
		c.t.Fatal(err)
	}
	nd.r = nil
}

// restart starts nd again on its stores, with a new transport at the same
// address, as a restarted process has: RPCs queued for the old one are
// lost.
func (c *cluster) restart(nd *node) {
	c.t.Helper()
	_, nd.trans = raft.NewInmemTransport(nd.addr)
	c.connectAll()
	c.start(nd, nil)
}

func (c *cluster) close() {
	for _, nd := range c.nodes {
		if nd.r != nil {
			if err := nd.r.Close(); err != nil {
				c.t.Error(err)
			}
			nd.r = nil
		}
		if nd.store != nil {
			if err := nd.store.Close(); err != nil {
				c.t.Error(err)
			}
			nd.store = nil
		}
	}
}

// running returns the nodes with a replica.
func (c *cluster) running() []*node {
	var out []*node
	for _, nd := range c.nodes {
		if nd.r != nil {
			out = append(out, nd)
		}
	}
	return out
}

// leader waits until one of the given nodes (default: every running one) is
// leader and returns it.
func (c *cluster) leader(among ...*node) *node {
	c.t.Helper()
	if len(among) == 0 {
		among = c.running()
	}
	var l *node
	waitFor(c.t, "a leader", func() bool {
		for _, nd := range among {
			if nd.r.IsLeader() {
				l = nd
				return true
			}
		}
		return false
	})
	return l
}

// server returns nd as a group member.
func server(nd *node) partition.Server { return partition.Server{ID: nd.id, Addr: string(nd.addr)} }

// followers returns the running nodes other than l.
func (c *cluster) followers(l *node) []*node {
	var out []*node
	for _, nd := range c.running() {
		if nd != l {
			out = append(out, nd)
		}
	}
	return out
}

// converge waits until every running replica's log ends where want's does
// and checks that they hold the same bytes.
func (c *cluster) converge(want *node) {
	c.t.Helper()
	waitFor(c.t, "replicas to agree on the end offset", func() bool {
		end := want.log.End()
		for _, nd := range c.running() {
			if nd.log.End() != end {
				return false
			}
		}
		return true
	})
	ref := logBatches(c.t, want.log)
	for _, nd := range c.running() {
		if nd == want {
			continue
		}
		if diff := cmp.Diff(ref, logBatches(c.t, nd.log)); diff != "" {
			c.t.Fatalf("%s's log differs from %s's (-%s +%s):\n%s", nd.id, want.id, want.id, nd.id, diff)
		}
	}
}

// logBatches returns every stored batch of l, as bytes.
func logBatches(t testing.TB, l *log.Log) [][]byte {
	t.Helper()
	var out [][]byte
	from, end := l.Start(), l.End()
	for from < end {
		bs, err := l.Read(from, 1<<20)
		if err != nil {
			t.Fatalf("read from %d: %v", from, err)
		}
		for _, b := range bs {
			out = append(out, b)
			from = b.NextOffset()
		}
	}
	return out
}

// values returns the value of every record in l, by offset.
func values(t testing.TB, l *log.Log) map[int64]string {
	t.Helper()
	out := make(map[int64]string)
	for _, b := range logBatches(t, l) {
		recs, err := record.Batch(b).Records()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			out[r.Offset] = string(r.Value)
		}
	}
	return out
}

// batchOf encodes one record per value.
func batchOf(vals ...string) record.Batch {
	recs := make([]record.Record, len(vals))
	for i, v := range vals {
		recs[i] = record.Record{Value: []byte(v), Timestamp: int64(1000 + i)}
	}
	return record.Encode(recs...)
}

// producerBatch encodes vals as one batch of an idempotent producer.
func producerBatch(pid int64, epoch int16, seq int32, vals ...string) record.Batch {
	var b record.Builder
	b.SetProducer(pid, epoch, seq)
	for i, v := range vals {
		b.Append(&record.Record{Value: []byte(v), Timestamp: int64(1000 + i)})
	}
	return append(record.Batch(nil), b.Build()...)
}

// appendWait appends b on r and waits for its offset.
func appendWait(r *partition.Replica, b record.Batch) (int64, error) {
	pd, err := r.Append(b, partition.AcksAll)
	if err != nil {
		return -1, err
	}
	return pd.WaitOffset()
}

// mustAppend appends b on r and fails the test on an error.
func mustAppend(t testing.TB, r *partition.Replica, b record.Batch) int64 {
	t.Helper()
	base, err := appendWait(r, b)
	if err != nil {
		t.Fatal(err)
	}
	return base
}

// isUnknownOrNotLeader reports whether err says an append did not succeed
// in a way a client may retry.
func isUnknownOrNotLeader(err error) bool {
	return errors.Is(err, partition.ErrOutcomeUnknown) || errors.Is(err, partition.ErrNotLeader)
}

// ack is a successful append: where and in which term, by which node.
type ack struct {
	node  string
	term  uint64
	base  int64
	batch record.Batch
}

// acks collects acks from concurrent writers.
type acks struct {
	mu   sync.Mutex
	list []ack
}

func (a *acks) add(k ack) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.list = append(a.list, k)
}

// wipe gives stopped node nd empty stores, as a replica whose disk was
// replaced.
func (c *cluster) wipe(nd *node) {
	c.t.Helper()
	if err := nd.store.Close(); err != nil {
		c.t.Fatal(err)
	}
	nd.store = nil
	for _, dir := range []string{nd.dbDir, nd.snapDir} {
		if err := os.RemoveAll(dir); err != nil {
			c.t.Fatal(err)
		}
	}
	nd.logs = raft.NewInmemStore()
	nd.stable = nd.logs.(*raft.InmemStore)
	c.openStore(nd)
}

// catchUpBySnapshot brings stopped follower f back after every running
// replica took a snapshot, so that leader l's log no longer holds what f
// missed: it hands l's leadership to the other follower, which has no
// backoff for f and no log entries for it either, waits for f to install
// a snapshot and for the new leader's end, and returns the new leader.
func (c *cluster) catchUpBySnapshot(l, f *node) *node {
	c.t.Helper()
	for _, nd := range c.running() {
		if err := nd.r.Snapshot(); err != nil {
			c.t.Fatal(err)
		}
	}
	c.restart(f)
	o := c.followers(l)[0]
	if o == f {
		o = c.followers(l)[1]
	}
	if err := l.r.TransferLeadershipTo(server(o)); err != nil {
		c.t.Fatal(err)
	}
	waitFor(c.t, "the follower to install a snapshot", func() bool { return f.r.Stats().SnapshotsRestored == 1 })
	c.converge(o)
	return o
}
