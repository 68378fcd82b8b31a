package pipeline_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/client/pipeline"
)

// The Funcs are plain functions of a record; Run calls them. Here they are
// called directly to show where records go.
func ExampleShard() {
	shard := pipeline.Shard(nil, "orders-0", "orders-1", "orders-2")
	for _, key := range []string{"alice", "bob", "carol", "alice"} {
		outs, _ := shard(context.Background(), &client.Record{Key: []byte(key)})
		fmt.Println(key, "→", outs[0].Topic)
	}
	// Output:
	// alice → orders-0
	// bob → orders-0
	// carol → orders-2
	// alice → orders-0
}

func ExampleSplit() {
	split := pipeline.Split(
		pipeline.Route{To: "big", Match: func(r *client.Record) bool { return len(r.Value) > 3 }},
		pipeline.Route{To: "small", Match: func(r *client.Record) bool { return len(r.Value) > 0 }},
	)
	for _, v := range []string{"elephant", "ant", ""} {
		outs, err := split(context.Background(), &client.Record{Value: []byte(v)})
		switch {
		case errors.Is(err, pipeline.ErrUnroutable):
			fmt.Printf("%q: unroutable, the stage stops here\n", v)
		default:
			fmt.Printf("%q → %s\n", v, outs[0].Topic)
		}
	}
	// Output:
	// "elephant" → big
	// "ant" → small
	// "": unroutable, the stage stops here
}

func ExampleCopy() {
	outs, _ := pipeline.Copy("audit", "billing")(context.Background(), &client.Record{Key: []byte("order-7"), Value: []byte("paid")})
	for _, o := range outs {
		fmt.Println(o.Topic, string(o.Key), string(o.Value))
	}
	// Output:
	// audit order-7 paid
	// billing order-7 paid
}
