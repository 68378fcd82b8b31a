package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/internal/testcluster"
	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// fakeGroups serves CommitOffsets, and CommitStream when stream is set.
type fakeGroups struct {
	runnelpb.UnimplementedGroupsServer

	mu      sync.Mutex
	unary   []*runnelpb.CommitOffsetsRequest
	streams int
	// stream, when set, serves the n-th CommitStream (from 0).
	stream func(n int, s runnelpb.Groups_CommitStreamServer) error
}

func (f *fakeGroups) CommitOffsets(ctx context.Context, req *runnelpb.CommitOffsetsRequest) (*runnelpb.CommitOffsetsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unary = append(f.unary, req)
	return &runnelpb.CommitOffsetsResponse{}, nil
}

func (f *fakeGroups) CommitStream(s runnelpb.Groups_CommitStreamServer) error {
	f.mu.Lock()
	serve := f.stream
	n := f.streams
	f.streams++
	f.mu.Unlock()
	if serve == nil {
		return status.Error(codes.Unimplemented, "unknown method CommitStream")
	}
	return serve(n, s)
}

func startFakeGroups(t *testing.T, f *fakeGroups) *client.Client {
	t.Helper()
	c, err := client.New(testContext(t), client.Brokers(serveFakeGroups(t, f)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// serveFakeGroups serves f on a loopback socket until the test ends and
// returns its address.
func serveFakeGroups(t *testing.T, f *fakeGroups) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	runnelpb.RegisterGroupsServer(s, f)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

// A broker without CommitStream gets unary commits, and is not asked for
// the stream again.
func TestCommitStreamFallsBackToUnary(t *testing.T) {
	f := &fakeGroups{}
	c := startFakeGroups(t, f)
	ctx := testContext(t)
	for i := range 3 {
		if err := c.CommitOffsets(ctx, "g", map[client.TopicPartition]int64{{Topic: "t", Partition: 0}: int64(i)}); err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.unary) != 3 || f.streams != 1 {
		t.Fatalf("unary commits %d, streams opened %d; want 3 and 1", len(f.unary), f.streams)
	}
}

// A stream that breaks with commits waiting fails them as a broken
// connection; the client retries them on a new stream.
func TestCommitStreamBreakRetries(t *testing.T) {
	f := &fakeGroups{}
	f.stream = func(n int, s runnelpb.Groups_CommitStreamServer) error {
		for {
			req, err := s.Recv()
			if err != nil {
				return err
			}
			if n == 0 {
				return status.Error(codes.Unavailable, "node is going away")
			}
			if err := s.Send(&runnelpb.CommitStreamResponse{RequestId: req.GetRequestId()}); err != nil {
				return err
			}
		}
	}
	c := startFakeGroups(t, f)
	if err := c.CommitOffsets(testContext(t), "g", map[client.TopicPartition]int64{{Topic: "t", Partition: 0}: 1}); err != nil {
		t.Fatalf("commit: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.streams != 2 || len(f.unary) != 0 {
		t.Fatalf("streams opened %d, unary commits %d; want 2 and 0", f.streams, len(f.unary))
	}
}

// Answers may come in any order; each reaches its own commit, and an
// error answers one commit without ending the stream.
func TestCommitStreamAnswersOutOfOrder(t *testing.T) {
	const commits = 8
	f := &fakeGroups{}
	f.stream = func(n int, s runnelpb.Groups_CommitStreamServer) error {
		var held []*runnelpb.CommitStreamRequest
		for len(held) < commits {
			req, err := s.Recv()
			if err != nil {
				return err
			}
			held = append(held, req)
		}
		for i := len(held) - 1; i >= 0; i-- {
			resp := &runnelpb.CommitStreamResponse{RequestId: held[i].GetRequestId()}
			if held[i].GetCommit().GetGroup() == "bad" {
				resp.Error = &runnelpb.Error{Code: int32(codes.NotFound), Reason: "TOPIC_NOT_FOUND", Message: "topic t not found", Metadata: map[string]string{"topic": "t"}}
			}
			if err := s.Send(resp); err != nil {
				return err
			}
		}
		<-s.Context().Done()
		return nil
	}
	c := startFakeGroups(t, f)
	ctx := testContext(t)
	errs := make([]error, commits)
	var wg sync.WaitGroup
	for i := range commits {
		group := fmt.Sprintf("g%d", i)
		if i == 3 {
			group = "bad"
		}
		wg.Go(func() {
			errs[i] = c.CommitOffsets(ctx, group, map[client.TopicPartition]int64{{Topic: "t", Partition: 0}: 1})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if i == 3 {
			if !errors.Is(err, client.ErrNotFound) {
				t.Errorf("commit of group bad: %v; want ErrNotFound", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("commit %d: %v", i, err)
		}
	}
}

// Many committers share one stream to a real broker: each commit is
// durable when it returns, and a refused one fails alone.
func TestCommitStreamConcurrentCommits(t *testing.T) {
	b := openBroker(t, "")
	c := newClient(t, b)
	createTopic(t, c, "t", 3, nil)
	ctx := testContext(t)
	const groups, rounds = 50, 20
	var wg sync.WaitGroup
	errs := make(chan error, groups)
	for g := range groups {
		wg.Go(func() {
			tp := client.TopicPartition{Topic: "t", Partition: int32(g % 3)}
			for off := int64(1); off <= rounds; off++ {
				if err := c.CommitOffsets(ctx, fmt.Sprintf("g%d", g), map[client.TopicPartition]int64{tp: off}); err != nil {
					errs <- fmt.Errorf("group g%d offset %d: %w", g, off, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for g := range groups {
		offs, err := c.CommittedOffsets(ctx, fmt.Sprintf("g%d", g))
		if err != nil {
			t.Fatal(err)
		}
		if got := offs[client.TopicPartition{Topic: "t", Partition: int32(g % 3)}]; got != rounds {
			t.Fatalf("group g%d committed %d, want %d", g, got, rounds)
		}
	}
	if opened, open := client.CommitStreams(c); opened != 1 || open != 1 {
		t.Fatalf("%d commit streams opened and %d open after %d commits to one broker, want 1 and 1", opened, open, groups*rounds)
	}
	err := c.CommitOffsets(ctx, "g0", map[client.TopicPartition]int64{{Topic: "missing", Partition: 0}: 1})
	if !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("commit on a missing topic: %v; want ErrNotFound", err)
	}
	if err := c.CommitOffsets(ctx, "g0", map[client.TopicPartition]int64{{Topic: "t", Partition: 0}: rounds + 1}); err != nil {
		t.Fatalf("commit after a refused one: %v", err)
	}
}

// groupsAt answers DeleteGroup with err.
type groupsAt struct {
	runnelpb.UnimplementedGroupsServer
	err error
}

func (g *groupsAt) DeleteGroup(context.Context, *runnelpb.DeleteGroupRequest) (*runnelpb.DeleteGroupResponse, error) {
	return nil, g.err
}

func serveGroups(t *testing.T, lis net.Listener, g runnelpb.GroupsServer) {
	s := grpc.NewServer()
	runnelpb.RegisterGroupsServer(s, g)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
}

func groupStatus(t *testing.T, reason string, md map[string]string) error {
	t.Helper()
	st, err := status.New(codes.FailedPrecondition, reason).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: "runnel.dev", Metadata: md})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

// A group with live members refuses a delete or seek with GROUP_ACTIVE,
// which the client reports as it is, not as a node that is not the
// coordinator, also when other nodes are asked after the coordinator.
func TestGroupActiveThroughAnotherNode(t *testing.T) {
	var lis [3]net.Listener
	for i := range lis {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lis[i] = l
	}
	coord := lis[1].Addr().String()
	notCoord := groupStatus(t, "NOT_COORDINATOR", map[string]string{"leader_id": "2", "leader_addr": coord})
	serveGroups(t, lis[0], &groupsAt{err: notCoord})
	serveGroups(t, lis[1], &groupsAt{err: groupStatus(t, "GROUP_ACTIVE", map[string]string{"group": "g"})})
	serveGroups(t, lis[2], &groupsAt{err: notCoord})
	c, err := client.New(testContext(t), client.Brokers(lis[0].Addr().String(), lis[2].Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	err = c.DeleteGroup(testContext(t), "g")
	var nl *client.NotLeaderError
	if !errors.Is(err, client.ErrGroupActive) || errors.As(err, &nl) {
		t.Fatalf("delete of an active group: %v; want ErrGroupActive", err)
	}
}

// answerCommits serves a commit stream that answers every commit.
func answerCommits(_ int, s runnelpb.Groups_CommitStreamServer) error {
	for {
		req, err := s.Recv()
		if err != nil {
			return err
		}
		if err := s.Send(&runnelpb.CommitStreamResponse{RequestId: req.GetRequestId()}); err != nil {
			return err
		}
	}
}

// hungListener accepts connections and never answers on them, as a
// broker that hangs; accepted gets each connection.
func hungListener(t *testing.T) (addr string, accepted chan struct{}) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = make(chan struct{}, 16)
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	})
	t.Cleanup(func() {
		lis.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return lis.Addr().String(), accepted
}

// Opening a commit stream to a broker that hangs neither holds up commits
// to other brokers nor outlasts the committer's context.
func TestCommitStreamOpenHungBroker(t *testing.T) {
	hung, accepted := hungListener(t)
	good := serveFakeGroups(t, &fakeGroups{stream: answerCommits})
	c, err := client.New(testContext(t), client.Brokers(good))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	req := func(group string) *runnelpb.CommitOffsetsRequest {
		return &runnelpb.CommitOffsetsRequest{Group: group, Offsets: []*runnelpb.PartitionOffset{{Topic: "t", Offset: 1}}}
	}
	ctx := testContext(t)
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	hungDone := make(chan error, 1)
	go func() { hungDone <- client.CommitVia(actx, c, hung, req("a")) }()
	select {
	case <-accepted:
	case <-ctx.Done():
		t.Fatal("the client did not connect to the hung broker")
	}
	// The stream to the hung broker is opening.
	bctx, bcancel := context.WithTimeout(ctx, 3*time.Second)
	defer bcancel()
	if err := client.CommitVia(bctx, c, good, req("b")); err != nil {
		t.Fatalf("commit to a broker that answers while a stream to a hung one opens: %v", err)
	}
	cctx, ccancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer ccancel()
	if err := client.CommitVia(cctx, c, hung, req("c")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("commit to the hung broker with a 300ms deadline: %v; want DeadlineExceeded", err)
	}
	cancel()
	if err := <-hungDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled commit to the hung broker: %v; want Canceled", err)
	}
}

// A commit whose Send blocks, on a broker that stopped reading its
// stream, returns when its context ends, and the next commit opens a new
// stream.
func TestCommitStreamSendBlocked(t *testing.T) {
	f := &fakeGroups{stream: func(_ int, s runnelpb.Groups_CommitStreamServer) error {
		<-s.Context().Done()
		return nil
	}}
	c := startFakeGroups(t, f)
	ctx := testContext(t)
	// Commits of 1 MiB each fill the stream's flow-control window (at most
	// 16 MiB) until a Send blocks.
	group := strings.Repeat("g", 1<<20)
	const commits = 24
	errs := make(chan error, commits)
	go func() {
		for range commits {
			cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			errs <- c.CommitOffsets(cctx, group, map[client.TopicPartition]int64{{Topic: "t"}: 1})
			cancel()
		}
	}()
	wait := time.NewTimer(30 * time.Second)
	defer wait.Stop()
	for i := range commits {
		select {
		case err := <-errs:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("commit %d to a broker that does not read: %v; want DeadlineExceeded", i, err)
			}
		case <-wait.C:
			t.Fatalf("commit %d still blocked 30s after its 300ms deadline", i)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.streams < 2 {
		t.Fatalf("%d commit streams opened; want the blocked one torn down and another opened", f.streams)
	}
}

// A stream to a node that answered NOT_COORDINATOR is closed once the
// commit moved to the coordinator.
func TestCommitStreamClosesNotCoordinator(t *testing.T) {
	ctx := testContext(t)
	addrs := testcluster.Start(t, ctx)
	c := testcluster.Client(t, ctx, addrs...)
	for i, addr := range addrs {
		req := &runnelpb.CommitOffsetsRequest{Group: "g", Offsets: []*runnelpb.PartitionOffset{{Topic: "ready", Offset: int64(i + 1)}}}
		if err := client.CommitVia(ctx, c, addr, req); err != nil {
			t.Fatalf("commit via %s: %v", addr, err)
		}
	}
	if opened, open := client.CommitStreams(c); opened != 3 || open != 1 {
		t.Fatalf("after commits via each of 3 nodes: %d commit streams opened, %d open; want 3 and 1 (the coordinator's)", opened, open)
	}
}

// A stream not used for a while is closed; the next commit opens another.
func TestCommitStreamClosesIdle(t *testing.T) {
	defer client.SetCommitStreamIdle(200 * time.Millisecond)()
	b := openBroker(t, "")
	c := newClient(t, b)
	createTopic(t, c, "t", 1, nil)
	ctx := testContext(t)
	commit := func(off int64) {
		t.Helper()
		if err := c.CommitOffsets(ctx, "g", map[client.TopicPartition]int64{{Topic: "t"}: off}); err != nil {
			t.Fatal(err)
		}
	}
	commit(1)
	waitFor(t, "the idle commit stream closed", 10*time.Second, func() bool {
		_, open := client.CommitStreams(c)
		return open == 0
	})
	commit(2)
	if opened, open := client.CommitStreams(c); opened != 2 || open != 1 {
		t.Fatalf("%d commit streams opened, %d open; want 2 and 1", opened, open)
	}
}
