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

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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

	mu       sync.Mutex
	nodes    []*runnelpb.Node
	leader   int32
	replicas []int32                                                            // of partition 0; just the leader when nil
	noTopics bool                                                               // Metadata answers without topic "t"
	onBatch  func(n int, req *runnelpb.ProduceRequest) (*runnelpb.Error, error) // n counts from 0
	// onAdmin, when set, answers DescribeTopic, CreateTopic and ClusterInfo
	// first: a non-nil error goes back as it is. n counts admin calls from 0.
	onAdmin    func(n int, method string) error
	adminCalls int
	batches    int
	written    []record.Batch
	hold       chan struct{} // when set, produce answers wait for it to close
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
	resp := &runnelpb.MetadataResponse{Nodes: f.nodes}
	if !f.noTopics {
		resp.Topics = []*runnelpb.TopicInfo{f.topicLocked()}
	}
	return resp, nil
}

func (f *fakeBroker) topicLocked() *runnelpb.TopicInfo {
	replicas := f.replicas
	if replicas == nil {
		replicas = []int32{f.leader}
	}
	return &runnelpb.TopicInfo{Name: "t", Partitions: []*runnelpb.PartitionInfo{
		{Partition: 0, Leader: f.leader, Replicas: replicas},
	}}
}

// admin runs onAdmin for one admin call.
func (f *fakeBroker) admin(method string) error {
	f.mu.Lock()
	n := f.adminCalls
	f.adminCalls++
	on := f.onAdmin
	f.mu.Unlock()
	if on == nil {
		return nil
	}
	return on(n, method)
}

func (f *fakeBroker) DescribeTopic(ctx context.Context, req *runnelpb.DescribeTopicRequest) (*runnelpb.DescribeTopicResponse, error) {
	if err := f.admin("DescribeTopic"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return &runnelpb.DescribeTopicResponse{Topic: f.topicLocked()}, nil
}

func (f *fakeBroker) CreateTopic(ctx context.Context, req *runnelpb.CreateTopicRequest) (*runnelpb.CreateTopicResponse, error) {
	if err := f.admin("CreateTopic"); err != nil {
		return nil, err
	}
	return &runnelpb.CreateTopicResponse{Topic: &runnelpb.TopicInfo{Name: req.Name}}, nil
}

func (f *fakeBroker) ClusterInfo(ctx context.Context, req *runnelpb.ClusterInfoRequest) (*runnelpb.ClusterInfoResponse, error) {
	if err := f.admin("ClusterInfo"); err != nil {
		return nil, err
	}
	return &runnelpb.ClusterInfoResponse{Node: f.id}, nil
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

// unavailable is the status a broker sends when it cannot serve yet, as
// broker/status.go builds it.
func unavailable(t testing.TB, reason string) error {
	t.Helper()
	st, err := status.New(codes.Unavailable, "cannot serve yet: "+reason).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: "runnel.dev"})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }
