package client_test

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/runnel-dev/runnel/client"
)

// TestBrokerErrorsAreTyped checks the broker's statuses arrive as the
// typed errors of errors.go, over both transports.
func TestBrokerErrorsAreTyped(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			b := openBroker(t, tr.addr)
			c := newClient(t, b)
			ctx := testContext(t)
			createTopic(t, c, "t", 2, nil)

			_, err := c.CreateTopic(ctx, "t", 1, 1, nil)
			var e *client.Error
			if !errors.Is(err, client.ErrAlreadyExists) || !errors.As(err, &e) || e.Reason != "TOPIC_EXISTS" {
				t.Errorf("create existing: %v", err)
			}
			_, err = c.DescribeTopic(ctx, "nope")
			if !errors.Is(err, client.ErrNotFound) || !strings.Contains(err.Error(), "runnel topic create nope") {
				t.Errorf("describe missing: %v", err)
			}
			_, err = c.CreateTopic(ctx, "bad name", 1, 1, nil)
			if !errors.Is(err, client.ErrInvalidArgument) {
				t.Errorf("bad name: %v", err)
			}
			_, err = c.ListOffsets(ctx, "t", 7, client.Start())
			if !errors.Is(err, client.ErrNotFound) {
				t.Errorf("missing partition: %v", err)
			}

			createTopic(t, c, "one", 1, nil)
			if err := c.ProduceSync(ctx, &client.Record{Topic: "one", Value: []byte("x")}); err != nil {
				t.Fatal(err)
			}
			_, err = c.ListOffsets(ctx, "one", 0, client.Offset(9))
			var oor *client.OffsetOutOfRangeError
			if !errors.Is(err, client.ErrOffsetOutOfRange) || !errors.As(err, &oor) {
				t.Fatalf("offset past the end: %v", err)
			}
			if oor.Topic != "one" || oor.Partition != 0 || oor.Offset != 9 || oor.Start != 0 || oor.End != 1 {
				t.Errorf("OffsetOutOfRangeError = %+v", oor)
			}
			for _, err := range c.Consume(ctx, "one", 0, client.Offset(5)) {
				if !errors.As(err, &oor) || oor.Offset != 5 || oor.End != 1 {
					t.Errorf("consume past the end: %v", err)
				}
				break
			}

			big := &client.Record{Topic: "t", Value: make([]byte, 2<<20)}
			err = c.ProduceSync(ctx, big)
			if !errors.Is(err, client.ErrInvalidArgument) || !errors.As(err, &e) || e.Reason != "BATCH_TOO_LARGE" || e.Metadata["limit"] == "" {
				t.Errorf("2 MiB record: %v", err)
			}
			if client.Retriable(err) {
				t.Errorf("BATCH_TOO_LARGE is retriable")
			}
		})
	}
}

func TestUnreachableBroker(t *testing.T) {
	c, err := client.New(testContext(t), client.Brokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.ListTopics(testContext(t))
	var ce *client.ConnectError
	if !errors.As(err, &ce) || ce.Addr != "127.0.0.1:1" || !errors.Is(err, client.ErrUnavailable) || !client.Retriable(err) {
		t.Fatalf("err = %v, want a ConnectError for 127.0.0.1:1", err)
	}
	err = c.ProduceSync(testContext(t), &client.Record{Topic: "t"})
	if !errors.As(err, &ce) {
		t.Fatalf("produce: err = %v, want a ConnectError", err)
	}
}

// TestErrorReasons checks that a status code shared by several failures is
// told apart by the ErrorInfo reason, in a call's status and in a produce
// stream's answer alike.
func TestErrorReasons(t *testing.T) {
	cases := []struct {
		code      codes.Code
		reason    string
		want      error
		notLeader bool // an *NotLeaderError with the hint
		retriable bool
	}{
		{codes.FailedPrecondition, "NOT_LEADER", client.ErrNotLeader, true, true},
		{codes.FailedPrecondition, "OUT_OF_ORDER_SEQUENCE", client.ErrOutOfOrderSequence, false, true},
		{codes.FailedPrecondition, "PRODUCER_FENCED", client.ErrProducerFenced, false, false},
		{codes.AlreadyExists, "DUPLICATE_SEQUENCE", client.ErrDuplicateSequence, false, false},
		{codes.AlreadyExists, "TOPIC_EXISTS", client.ErrAlreadyExists, false, false},
	}
	sentinels := []error{client.ErrNotLeader, client.ErrOutOfOrderSequence, client.ErrProducerFenced,
		client.ErrDuplicateSequence, client.ErrAlreadyExists}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			f := startFake(t, 1)
			// A hint to the broker asked, so the call does not follow it.
			md := map[string]string{"leader_id": "2", "leader_addr": f.addr}
			f.set(func(f *fakeBroker) {
				f.onAdmin = func(int, string) error {
					st, err := status.New(tc.code, "answer "+tc.reason).WithDetails(&errdetails.ErrorInfo{Reason: tc.reason, Domain: "runnel.dev", Metadata: md})
					if err != nil {
						t.Fatal(err)
					}
					return st.Err()
				}
			})
			_, err := fakeClient(t, f).DescribeTopic(testContext(t), "t")
			for _, s := range sentinels {
				if errors.Is(err, s) != (s == tc.want) {
					t.Errorf("errors.Is(%v, %v) = %v", err, s, !(s == tc.want))
				}
			}
			var nl *client.NotLeaderError
			if errors.As(err, &nl) != tc.notLeader || (tc.notLeader && (nl.LeaderID != 2 || nl.LeaderAddr != f.addr)) {
				t.Errorf("NotLeaderError from %v: %+v, want one: %v", err, nl, tc.notLeader)
			}
			var e *client.Error
			if !errors.As(err, &e) || e.Reason != tc.reason {
				t.Errorf("reason of %v: want %s", err, tc.reason)
			}
			if client.Retriable(err) != tc.retriable {
				t.Errorf("Retriable(%v) = %v", err, !tc.retriable)
			}
		})
	}
}
