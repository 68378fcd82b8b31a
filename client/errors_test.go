package client_test

import (
	"errors"
	"strings"
	"testing"

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
