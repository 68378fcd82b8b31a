package broker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// retryWhile calls call until again rejects its answer, which it then
// returns, or ctx ends.
func retryWhile(t *testing.T, ctx context.Context, again func(error) bool, call func() error) error {
	t.Helper()
	for {
		err := call()
		if !again(err) {
			return err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// fetchFirst opens a fetch stream of topic/0 from pos on b and returns the
// stream's first answer.
func fetchFirst(ctx context.Context, b runnelpb.BrokerClient, topic string, pos *runnelpb.Position) (*runnelpb.FetchResponse, error) {
	fs, err := b.Fetch(ctx)
	if err != nil {
		return nil, err
	}
	if err := fs.Send(&runnelpb.FetchRequest{Topic: topic, Partition: 0, From: pos, CreditBytes: 1 << 20}); err != nil {
		return nil, err
	}
	return fs.Recv()
}

// TestReadsOnFollowerNotLeader: in a cluster, Fetch and ListOffsets sent
// straight to a follower answer NOT_LEADER naming the leader, whose copy is
// the current one, and the leader answers them. A fetch long-polling at the
// end of the log on the leader ends when a reassignment hands the
// leadership to another replica, rather than waiting on a node that no
// longer leads.
func TestReadsOnFollowerNotLeader(t *testing.T) {
	ctx, _, addrs, c := startClusterClient(t)
	info := createTopicWhenReady(t, ctx, c, "reads", 1, 3)
	if err := c.ProduceSync(ctx, &client.Record{Topic: "reads", Value: []byte("a")}, &client.Record{Topic: "reads", Value: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	brokers := make([]runnelpb.BrokerClient, len(addrs))
	for i, conn := range dialNodes(t, addrs) {
		brokers[i] = runnelpb.NewBrokerClient(conn)
	}
	end := &runnelpb.Position{At: &runnelpb.Position_End{End: true}}
	listEnd := &runnelpb.ListOffsetsRequest{Topic: "reads", Partition: 0, At: end}

	// checkReads checks that node leader (an index into addrs) alone
	// answers reads, with end offset want, and that the others name it.
	checkReads := func(leader int, want int64) {
		t.Helper()
		var resp *runnelpb.ListOffsetsResponse
		// A new leader is elected (or known to the others) shortly.
		notYet := func(err error) bool {
			st, _ := status.FromError(err)
			return st.Code() == codes.Unavailable || st.Code() == codes.FailedPrecondition
		}
		err := retryWhile(t, ctx, notYet, func() (err error) {
			resp, err = brokers[leader].ListOffsets(ctx, listEnd)
			return err
		})
		if err != nil {
			t.Fatalf("ListOffsets on the leader, node %d: %v", leader+1, err)
		}
		if resp.EndOffset != want || resp.Offset != want {
			t.Fatalf("ListOffsets on the leader, node %d: offset %d, end %d; want %d", leader+1, resp.Offset, resp.EndOffset, want)
		}
		fr, err := fetchFirst(ctx, brokers[leader], "reads", &runnelpb.Position{At: &runnelpb.Position_Start{Start: true}})
		if err != nil {
			t.Fatalf("Fetch on the leader, node %d: %v", leader+1, err)
		}
		if fr.HighWatermark != want {
			t.Fatalf("Fetch on the leader, node %d: high watermark %d, want %d", leader+1, fr.HighWatermark, want)
		}
		for i := range brokers {
			if i == leader {
				continue
			}
			for name, call := range map[string]func() error{
				"ListOffsets": func() error { _, err := brokers[i].ListOffsets(ctx, listEnd); return err },
				"Fetch":       func() error { _, err := fetchFirst(ctx, brokers[i], "reads", end); return err },
			} {
				// A follower learns of a new leader with its first
				// heartbeat.
				hintsElsewhere := func(err error) bool {
					st, _ := status.FromError(err)
					if st.Code() == codes.Unavailable {
						return true
					}
					for _, d := range st.Details() {
						if info, ok := d.(*errdetails.ErrorInfo); ok && info.Reason == "NOT_LEADER" {
							return info.Metadata["leader_id"] != fmt.Sprint(leader+1)
						}
					}
					return false
				}
				err := retryWhile(t, ctx, hintsElsewhere, call)
				details := wantCode(t, err, codes.FailedPrecondition, "NOT_LEADER")
				if addr := details.Metadata["leader_addr"]; addr != addrs[leader] {
					t.Fatalf("%s on follower node %d: leader hint %s at %s, want %d at %s", name, i+1, details.Metadata["leader_id"], addr, leader+1, addrs[leader])
				}
			}
		}
	}
	leader := int(info.Partitions[0].Leader) - 1
	if leader < 0 {
		t.Fatalf("topic created without a leader: %+v", info)
	}
	checkReads(leader, 2)

	// A fetch at the end of the log waits on the leader for records.
	pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
	defer pcancel()
	polled := make(chan error, 1)
	go func() {
		_, err := fetchFirst(pctx, brokers[leader], "reads", &runnelpb.Position{At: &runnelpb.Position_Offset{Offset: 2}})
		polled <- err
	}()
	// Another replica becomes the preferred one; the leader hands over.
	replicas := info.Partitions[0].Replicas
	next := []int32{replicas[0]}
	if next[0] == int32(leader+1) {
		next[0] = replicas[1]
	}
	for _, r := range replicas {
		if r != next[0] {
			next = append(next, r)
		}
	}
	if _, _, err := c.ReassignPartition(ctx, "reads", 0, next); err != nil {
		t.Fatal(err)
	}
	err := <-polled
	if pctx.Err() != nil {
		t.Fatalf("the long poll on node %d did not end when it stopped leading: %v", leader+1, err)
	}
	// Raft may know the new leader when the old one notices the change,
	// or not yet.
	if st, _ := status.FromError(err); st.Code() != codes.Unavailable {
		details := wantCode(t, err, codes.FailedPrecondition, "NOT_LEADER")
		if id := details.Metadata["leader_id"]; id != fmt.Sprint(next[0]) {
			t.Fatalf("the long poll ended naming leader %s, want %d", id, next[0])
		}
	}
	checkReads(int(next[0])-1, 2)
}

// TestReplicaStatusReportsTheLogEnd asks every replica of a partition for
// its log end, as a leader does before sending a snapshot: each answers
// the end of its own log once it has the records, and only when asked.
func TestReplicaStatusReportsTheLogEnd(t *testing.T) {
	ctx, _, addrs, c := startClusterClient(t)
	createTopicWhenReady(t, ctx, c, "t", 1, 3)
	var recs []*client.Record
	for i := range 10 {
		recs = append(recs, &client.Record{Topic: "t", Value: fmt.Appendf(nil, "v%d", i)})
	}
	if err := c.ProduceSync(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	for i, conn := range dialNodes(t, addrs) {
		bc := runnelpb.NewBrokerClient(conn)
		// The first topic of a cluster gets id 1.
		req := &runnelpb.ReplicaStatusRequest{TopicId: 1, Partition: 0}
		resp, err := bc.ReplicaStatus(ctx, req)
		if err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
		if resp.LogEnd != nil {
			t.Fatalf("node %d reported its log end (%d) unasked", i+1, resp.GetLogEnd())
		}
		req.SyncLog = true
		for {
			if resp, err = bc.ReplicaStatus(ctx, req); err != nil {
				t.Fatalf("node %d: %v", i+1, err)
			}
			if resp.LogEnd == nil {
				t.Fatalf("node %d did not report its log end", i+1)
			}
			if resp.GetLogEnd() == 10 {
				break
			}
			if resp.GetLogEnd() > 10 {
				t.Fatalf("node %d: log end %d, want 10", i+1, resp.GetLogEnd())
			}
			// A follower learns of the commit with the leader's next
			// message.
			select {
			case <-ctx.Done():
				t.Fatalf("node %d: log end %d, want 10", i+1, resp.GetLogEnd())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}
