package client_test

import (
	"testing"

	"github.com/runnel-dev/runnel/client"
)

// TestEnsureTopic creates a missing topic, then finds it as it is from
// another client, whatever partition count that one asks for.
func TestEnsureTopic(t *testing.T) {
	b := openBroker(t, "")
	ctx := testContext(t)
	for i, partitions := range []int{3, 5} {
		c := newClient(t, b)
		info, err := c.EnsureTopic(ctx, "t", partitions, 1)
		if err != nil {
			t.Fatalf("EnsureTopic %d: %v", i, err)
		}
		if info.Name != "t" || len(info.Partitions) != 3 {
			t.Fatalf("EnsureTopic %d = %+v, want topic t with 3 partitions", i, info)
		}
		if err := c.ProduceSync(ctx, &client.Record{Topic: "t", Value: []byte("v")}); err != nil {
			t.Fatalf("produce after EnsureTopic %d: %v", i, err)
		}
	}
}
