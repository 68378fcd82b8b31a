package broker_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
)

// freeAddrs returns n loopback addresses with ports the OS had free.
func freeAddrs(t *testing.T, n int) []string {
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

// startCluster opens n cluster nodes in this process on loopback sockets
// with OS-chosen ports; they close when the test ends.
// startClusterClient skips in -short mode, or starts a three-node cluster
// and a client of it, closed when the test ends, and returns them with a
// context that ends after two minutes.
func startClusterClient(t *testing.T) (context.Context, []*broker.Broker, []string, *client.Client) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	brokers, addrs := startCluster(t, 3)
	c, err := client.New(ctx, client.Brokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return ctx, brokers, addrs, c
}

// dialNodes opens a gRPC connection to each of addrs, closed when the test
// ends, for tests that call a particular node.
func dialNodes(t *testing.T, addrs []string) []*grpc.ClientConn {
	t.Helper()
	conns := make([]*grpc.ClientConn, len(addrs))
	for i, a := range addrs {
		conn, err := grpc.NewClient(a, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conns[i] = conn
	}
	return conns
}

func startCluster(t *testing.T, n int) ([]*broker.Broker, []string) {
	t.Helper()
	addrs := freeAddrs(t, n)
	peers := map[int32]string{}
	for i, a := range addrs {
		peers[int32(i+1)] = a
	}
	brokers := make([]*broker.Broker, n)
	for i := range brokers {
		b, err := broker.Open(t.TempDir(), broker.Options{NodeID: int32(i + 1), Cluster: peers, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		brokers[i] = b
		t.Cleanup(func() { b.Close() })
	}
	return brokers, addrs
}

// createTopicWhenReady creates a topic, retrying while the controller
// elects its leader and the nodes register.
func createTopicWhenReady(t *testing.T, ctx context.Context, c *client.Client, name string, partitions, replicas int) client.TopicInfo {
	t.Helper()
	for {
		info, err := c.CreateTopic(ctx, name, partitions, replicas, nil)
		if err == nil {
			return info
		}
		if ctx.Err() != nil || !strings.Contains(err.Error(), "cluster has") && !client.Retriable(err) {
			t.Fatalf("create topic: %v", err)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestClusterInProcess runs three cluster nodes in this process on real
// sockets: a replicated topic takes writes through any node, every record
// reads back once, and the cluster keeps taking writes with one node gone.
func TestClusterInProcess(t *testing.T) {
	ctx, brokers, _, c := startClusterClient(t)
	info := createTopicWhenReady(t, ctx, c, "r", 3, 3)
	leaders := map[int32]bool{}
	for _, p := range info.Partitions {
		if len(p.Replicas) != 3 {
			t.Fatalf("partition %d replicas %v, want 3", p.Partition, p.Replicas)
		}
		leaders[p.Leader] = true
	}
	if len(leaders) != 3 {
		t.Fatalf("leaders %v: want one partition led by each node", info.Partitions)
	}

	const n = 3000
	recs := make([]*client.Record, n)
	for i := range recs {
		recs[i] = &client.Record{Topic: "r", Key: []byte(fmt.Sprint(i % 17)), Value: []byte(fmt.Sprint(i))}
	}
	if err := c.ProduceSync(ctx, recs[:n/2]...); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs[:n/2] {
		if r.Offset < 0 {
			t.Fatalf("acked record %q has offset %d", r.Value, r.Offset)
		}
	}
	// Node 3 stops; its partitions' leadership moves and writes go on.
	if err := brokers[2].Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.ProduceSync(ctx, recs[n/2:]...); err != nil {
		t.Fatalf("produce with node 3 stopped: %v", err)
	}

	seen := make([]int, n)
	for p := range int32(3) {
		offs, err := c.ListOffsets(ctx, "r", p, client.End())
		if err != nil {
			t.Fatal(err)
		}
		want := int64(0)
		for r, err := range c.Consume(ctx, "r", p, client.Start()) {
			if err != nil {
				t.Fatal(err)
			}
			if r.Offset != want {
				t.Fatalf("partition %d: offset %d, want %d", p, r.Offset, want)
			}
			want++
			var v int
			fmt.Sscan(string(r.Value), &v)
			seen[v]++
			if want == offs.End {
				break
			}
		}
	}
	for v, k := range seen {
		if k != 1 {
			t.Fatalf("value %d read %d times, want once", v, k)
		}
	}
}
