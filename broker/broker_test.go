package broker_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/proto/runnelpb"
	"github.com/runnel-dev/runnel/record"
)

// open starts a broker on a temporary folder and returns a raw API client.
func open(t *testing.T, opts broker.Options) (*broker.Broker, runnelpb.BrokerClient, *grpc.ClientConn) {
	t.Helper()
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	b, err := broker.Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	conn, err := grpc.NewClient(b.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return b, runnelpb.NewBrokerClient(conn), conn
}

func batchOf(values ...string) []byte {
	recs := make([]record.Record, len(values))
	for i, v := range values {
		recs[i] = record.Record{Value: []byte(v), Timestamp: time.Now().UnixMilli()}
	}
	return record.Encode(recs...)
}

// wantCode checks err's code and ErrorInfo reason.
func wantCode(t *testing.T, err error, code codes.Code, reason string) *errdetails.ErrorInfo {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("error %v: want code %v", err, code)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			if info.Reason != reason {
				t.Fatalf("reason %q, want %q", info.Reason, reason)
			}
			return info
		}
	}
	if reason != "" {
		t.Fatalf("no ErrorInfo in %v", err)
	}
	return nil
}

func createTopic(t *testing.T, c runnelpb.BrokerClient, name string, parts int32, configs map[string]string) {
	t.Helper()
	if _, err := c.CreateTopic(context.Background(), &runnelpb.CreateTopicRequest{Name: name, Partitions: parts, Configs: configs}); err != nil {
		t.Fatal(err)
	}
}

func TestErrorCodes(t *testing.T) {
	ctx := context.Background()
	_, c, _ := open(t, broker.Options{})
	createTopic(t, c, "t", 2, nil)

	_, err := c.CreateTopic(ctx, &runnelpb.CreateTopicRequest{Name: "t", Partitions: 1})
	wantCode(t, err, codes.AlreadyExists, "TOPIC_EXISTS")
	_, err = c.CreateTopic(ctx, &runnelpb.CreateTopicRequest{Name: "bad/name", Partitions: 1})
	wantCode(t, err, codes.InvalidArgument, "INVALID_TOPIC_NAME")
	_, err = c.CreateTopic(ctx, &runnelpb.CreateTopicRequest{Name: "u", Partitions: 1, Configs: map[string]string{"retention.mss": "1"}})
	wantCode(t, err, codes.InvalidArgument, "INVALID_CONFIG")
	_, err = c.DescribeTopic(ctx, &runnelpb.DescribeTopicRequest{Name: "nope"})
	info := wantCode(t, err, codes.NotFound, "TOPIC_NOT_FOUND")
	if info.Metadata["topic"] != "nope" {
		t.Fatalf("metadata %v", info.Metadata)
	}
	_, err = c.Produce(ctx, &runnelpb.ProduceRequest{Topic: "t", Partition: 2, Batch: batchOf("x")})
	wantCode(t, err, codes.NotFound, "PARTITION_NOT_FOUND")

	big := record.Encode(record.Record{Value: bytes.Repeat([]byte("x"), 2<<20)})
	_, err = c.Produce(ctx, &runnelpb.ProduceRequest{Topic: "t", Batch: big})
	info = wantCode(t, err, codes.InvalidArgument, "BATCH_TOO_LARGE")
	if info.Metadata["limit"] != "1048576" {
		t.Fatalf("metadata %v", info.Metadata)
	}

	corrupt := batchOf("a", "b")
	corrupt[len(corrupt)-1] ^= 1
	_, err = c.Produce(ctx, &runnelpb.ProduceRequest{Topic: "t", Batch: corrupt})
	wantCode(t, err, codes.InvalidArgument, "CORRUPT_BATCH")

	// Rejected batches left nothing behind.
	resp, err := c.ListOffsets(ctx, &runnelpb.ListOffsetsRequest{Topic: "t", At: &runnelpb.Position{At: &runnelpb.Position_End{End: true}}})
	if err != nil || resp.EndOffset != 0 {
		t.Fatalf("end offset after rejected batches: %v %v", resp, err)
	}

	_, err = c.ListOffsets(ctx, &runnelpb.ListOffsetsRequest{Topic: "t", At: &runnelpb.Position{At: &runnelpb.Position_Offset{Offset: 5}}})
	info = wantCode(t, err, codes.OutOfRange, "OFFSET_OUT_OF_RANGE")
	if info.Metadata["start_offset"] != "0" || info.Metadata["end_offset"] != "0" {
		t.Fatalf("metadata %v", info.Metadata)
	}
}

func TestProduceStreamOrderAndFetch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, c, _ := open(t, broker.Options{})
	createTopic(t, c, "s", 3, nil)

	ps, err := c.ProduceStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	for i := range n {
		req := &runnelpb.ProduceRequest{RequestId: uint64(i), Topic: "s", Partition: int32(i % 3), Batch: batchOf(fmt.Sprint(i))}
		if err := ps.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	ps.Send(&runnelpb.ProduceRequest{RequestId: n, Topic: "missing", Batch: batchOf("x")})
	ps.CloseSend()
	lastBase := map[int32]int64{0: -1, 1: -1, 2: -1}
	for range n + 1 {
		resp, err := ps.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if resp.RequestId == n {
			if resp.Error == nil || codes.Code(resp.Error.Code) != codes.NotFound || resp.Error.Reason != "TOPIC_NOT_FOUND" {
				t.Fatalf("in-band error: %v", resp.Error)
			}
			continue
		}
		if resp.Error != nil {
			t.Fatal(resp.Error)
		}
		if resp.BaseOffset != lastBase[resp.Partition]+1 {
			t.Fatalf("partition %d: base %d after %d", resp.Partition, resp.BaseOffset, lastBase[resp.Partition])
		}
		lastBase[resp.Partition] = resp.BaseOffset
	}

	// Fetch partition 1 with a credit of one byte: the server sends one
	// response and then waits for more credit.
	fs, err := c.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fs.Send(&runnelpb.FetchRequest{Topic: "s", Partition: 1, From: &runnelpb.Position{At: &runnelpb.Position_Start{Start: true}}, CreditBytes: 1})
	resp, err := fs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Batches) != 1 {
		t.Fatalf("with 1 byte of credit got %d batches, want exactly one", len(resp.Batches))
	}
	got := 1
	fs.Send(&runnelpb.FetchRequest{CreditBytes: 1 << 20})
	for got < n/3 {
		resp, err := fs.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range resp.Batches {
			rec, err := record.Batch(b).Records()
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprint(got*3 + 1); string(rec[0].Value) != want || rec[0].Offset != int64(got) {
				t.Fatalf("offset %d value %q, want offset %d value %s", rec[0].Offset, rec[0].Value, got, want)
			}
			got++
		}
	}
	// Long poll: a record produced now wakes the stream.
	if _, err := c.Produce(ctx, &runnelpb.ProduceRequest{Topic: "s", Partition: 1, Batch: batchOf("late")}); err != nil {
		t.Fatal(err)
	}
	resp, err = fs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := record.Batch(resp.Batches[0]).Records()
	if string(rec[0].Value) != "late" || rec[0].Offset != n/3 {
		t.Fatalf("long poll got %q at %d", rec[0].Value, rec[0].Offset)
	}
}

func TestFetchErrors(t *testing.T) {
	ctx := context.Background()
	_, c, _ := open(t, broker.Options{})
	createTopic(t, c, "f", 1, nil)
	fs, _ := c.Fetch(ctx)
	fs.Send(&runnelpb.FetchRequest{Topic: "nope", CreditBytes: 1})
	_, err := fs.Recv()
	wantCode(t, err, codes.NotFound, "TOPIC_NOT_FOUND")

	fs, _ = c.Fetch(ctx)
	fs.Send(&runnelpb.FetchRequest{Topic: "f", From: &runnelpb.Position{At: &runnelpb.Position_Offset{Offset: 7}}, CreditBytes: 1})
	_, err = fs.Recv()
	wantCode(t, err, codes.OutOfRange, "OFFSET_OUT_OF_RANGE")
}

func TestRestartKeepsTopicsAndRecords(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b, err := broker.Open(dir, broker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	conn, _ := grpc.NewClient("passthrough:///inprocess", grpc.WithContextDialer(b.DialContext), grpc.WithTransportCredentials(insecure.NewCredentials()))
	c := runnelpb.NewBrokerClient(conn)
	createTopic(t, c, "r", 2, map[string]string{"retention.ms": "-1"})
	for range 5 {
		if _, err := c.Produce(ctx, &runnelpb.ProduceRequest{Topic: "r", Partition: 1, Batch: batchOf("a", "b")}); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	b.Close()

	b, err = broker.Open(dir, broker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	conn, _ = grpc.NewClient("passthrough:///inprocess", grpc.WithContextDialer(b.DialContext), grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer conn.Close()
	c = runnelpb.NewBrokerClient(conn)
	d, err := c.DescribeTopic(ctx, &runnelpb.DescribeTopicRequest{Name: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Topic.Partitions) != 2 || d.Topic.Partitions[1].EndOffset != 10 || d.Topic.Configs["retention.ms"] != "-1" {
		t.Fatalf("after restart: %v", d.Topic)
	}
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", h, err)
	}
}

// TestCloseEndsIdleStreams: Close does not wait for clients to hang up. With
// an hour of ShutdownTimeout, a Close that waited on the idle streams would
// hang the test.
func TestCloseEndsIdleStreams(t *testing.T) {
	ctx := context.Background()
	b, c, _ := open(t, broker.Options{ShutdownTimeout: time.Hour})
	createTopic(t, c, "idle", 1, nil)
	ps, err := c.ProduceStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ps.Send(&runnelpb.ProduceRequest{Topic: "idle", Batch: batchOf("x")}); err != nil {
		t.Fatal(err)
	}
	if _, err := ps.Recv(); err != nil {
		t.Fatal(err)
	}
	fs, err := c.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fs.Send(&runnelpb.FetchRequest{Topic: "idle", From: &runnelpb.Position{At: &runnelpb.Position_End{End: true}}, CreditBytes: 1 << 20})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ps.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("produce stream after Close: %v, want UNAVAILABLE", err)
	}
	if _, err := fs.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("fetch stream after Close: %v, want UNAVAILABLE", err)
	}
}
