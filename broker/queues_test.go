package broker_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// TestDescribeQueueLoadError checks that a partition whose queue state
// does not load answers a describe with an error naming the topic and
// partition, not with no groups.
func TestDescribeQueueLoadError(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	opts := broker.Options{Logger: slog.New(slog.DiscardHandler)}
	openBroker := func() (*broker.Broker, *grpc.ClientConn) {
		t.Helper()
		b, err := broker.Open(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient("passthrough:///inprocess", grpc.WithContextDialer(b.DialContext), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		return b, conn
	}
	b, conn := openBroker()
	c := runnelpb.NewBrokerClient(conn)
	createTopic(t, c, "jobs", 1, nil)
	if _, err := c.Produce(ctx, &runnelpb.ProduceRequest{Topic: "jobs", Partition: 0, Batch: batchOf("a")}); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// Write a queue group header ('Q' and the group's name) that does not
	// decode into the partition's log.
	s, err := log.Open(filepath.Join(dir, "log"), log.Options{RetentionInterval: -1, Logger: opts.Logger})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := s.IDs()
	if err != nil || len(ids) != 1 {
		t.Fatalf("logs %v, %v; want the partition's only", ids, err)
	}
	l, err := s.Log(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	wait, err := l.WriteState([]log.StateOp{{Key: []byte("Qg"), Value: []byte("junk")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	b, conn = openBroker()
	defer b.Close()
	defer conn.Close()
	q := runnelpb.NewQueuesClient(conn)
	for _, group := range []string{"", "g"} {
		resp, err := q.DescribeQueue(ctx, &runnelpb.DescribeQueueRequest{Topic: "jobs", Partition: 0, Group: group})
		wantCode(t, err, codes.Internal, "")
		if !strings.Contains(err.Error(), "jobs/0") {
			t.Fatalf("describe of %q over a bad queue state: %v, %v; want an error naming jobs/0", group, resp, err)
		}
	}
}
