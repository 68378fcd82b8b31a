package client_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/runnel-dev/runnel/proto/runnelpb"
	"github.com/runnel-dev/runnel/record"
)

// fakeBroker serves a scripted runnel.v1 API on a loopback port: one topic
// "t" with one partition, led by the node the test says. Tests use it for
// what one real broker cannot do on demand: refuse as a non-leader, ask
// for a retry delay, lose the outcome, or break a stream. The error
// statuses it sends follow broker/status.go.
type fakeBroker struct {
	runnelpb.UnimplementedBrokerServer
	id   int32
	addr string

	mu      sync.Mutex
	nodes   []*runnelpb.Node
	leader  int32
	onBatch func(n int, req *runnelpb.ProduceRequest) (*runnelpb.Error, error) // n counts from 0
	batches int
	written []record.Batch
	hold    chan struct{} // when set, produce answers wait for it to close
}

func startFake(t *testing.T, id int32) *fakeBroker {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeBroker{id: id, addr: lis.Addr().String(), leader: id}
	f.nodes = []*runnelpb.Node{{Id: id, Addr: f.addr}}
	s := grpc.NewServer()
	runnelpb.RegisterBrokerServer(s, f)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return f
}

func (f *fakeBroker) set(fn func(f *fakeBroker)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeBroker) writtenCopy() []record.Batch {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]record.Batch(nil), f.written...)
}

func (f *fakeBroker) Metadata(ctx context.Context, req *runnelpb.MetadataRequest) (*runnelpb.MetadataResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &runnelpb.MetadataResponse{
		Nodes: f.nodes,
		Topics: []*runnelpb.TopicInfo{{Name: "t", Partitions: []*runnelpb.PartitionInfo{
			{Partition: 0, Leader: f.leader, Replicas: []int32{f.leader}},
		}}},
	}, nil
}

func (f *fakeBroker) ProduceStream(stream grpc.BidiStreamingServer[runnelpb.ProduceRequest, runnelpb.ProduceResponse]) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		f.mu.Lock()
		n := f.batches
		f.batches++
		on, hold := f.onBatch, f.hold
		f.mu.Unlock()
		if hold != nil {
			select {
			case <-hold:
			case <-stream.Context().Done():
				return stream.Context().Err()
			}
		}
		var perr *runnelpb.Error
		if on != nil {
			perr, err = on(n, req)
			if err != nil {
				return err // breaks the stream
			}
		}
		resp := &runnelpb.ProduceResponse{RequestId: req.RequestId, Topic: req.Topic, Partition: req.Partition, Error: perr}
		if perr == nil {
			f.mu.Lock()
			b := append(record.Batch(nil), req.Batch...)
			base := int64(0)
			for _, w := range f.written {
				base += int64(w.Count())
			}
			b.SetBaseOffset(base)
			f.written = append(f.written, b)
			f.mu.Unlock()
			resp.BaseOffset = base
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// notLeader is the in-stream error a follower gives, with its leader hint.
func notLeader(leader *fakeBroker) *runnelpb.Error {
	return &runnelpb.Error{
		Code: int32(codes.FailedPrecondition), Reason: "NOT_LEADER",
		Message:  "node is not the leader of t/0",
		Metadata: map[string]string{"leader_id": itoa(leader.id), "leader_addr": leader.addr},
	}
}

func backlogFull(after time.Duration) *runnelpb.Error {
	return &runnelpb.Error{
		Code: int32(codes.ResourceExhausted), Reason: "BACKLOG_FULL",
		Message: "t/0 has too many bytes pending; retry later", RetryAfterMs: after.Milliseconds(),
	}
}

func outcomeUnknown() *runnelpb.Error {
	return &runnelpb.Error{Code: int32(codes.Unavailable), Reason: "OUTCOME_UNKNOWN", Message: "leadership lost mid-write"}
}

func tooLarge() *runnelpb.Error {
	return &runnelpb.Error{
		Code: int32(codes.InvalidArgument), Reason: "BATCH_TOO_LARGE",
		Message:  "record batch of 2.0 MiB for t/0 exceeds max.message.bytes (1.0 MiB)",
		Metadata: map[string]string{"topic": "t", "partition": "0", "size": "2097152", "limit": "1048576"},
	}
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }
