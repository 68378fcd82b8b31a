package client_test

import (
	"fmt"
	"testing"

	"github.com/runnel-dev/runnel/client"
)

func TestKeyPartitionerHashesKeys(t *testing.T) {
	p := client.KeyPartitioner().ForTopic("t")
	for i := range 100 {
		key := []byte(fmt.Sprint("key-", i))
		want := client.KeyPartition(key, 7)
		for range 3 {
			if got := p.Partition(&client.Record{Key: key}, 7); got != want {
				t.Fatalf("key %q: partition %d, then %d", key, want, got)
			}
		}
	}
	// murmur2("foobar") = -790332482 (0xd0e47bbe), so partition
	// (0xd0e47bbe & 0x7fffffff) % 10 = 1357151166 % 10 = 6.
	if got, want := client.KeyPartition([]byte("foobar"), 10), 6; got != want {
		t.Fatalf("KeyPartition(foobar, 10) = %d, want %d", got, want)
	}
}

func TestKeyPartitionerSticksWithoutKey(t *testing.T) {
	p := client.KeyPartitioner().ForTopic("t")
	value := make([]byte, 1000)
	first := p.Partition(&client.Record{Value: value}, 4)
	// About a batch's worth (1 MiB) goes to one partition.
	for i := range 1000 {
		if got := p.Partition(&client.Record{Value: value}, 4); got != first {
			t.Fatalf("record %d went to %d, not the sticky %d", i, got, first)
		}
	}
	moved := false
	for range 2000 {
		if p.Partition(&client.Record{Value: value}, 4) != first {
			moved = true
			break
		}
	}
	if !moved {
		t.Fatalf("keyless records stuck to partition %d past two batches' worth", first)
	}
}

func TestRoundRobinAndManualPartitioners(t *testing.T) {
	rr := client.RoundRobinPartitioner().ForTopic("t")
	for i := range 10 {
		if got := rr.Partition(&client.Record{Key: []byte("same")}, 3); got != i%3 {
			t.Fatalf("round robin record %d: partition %d, want %d", i, got, i%3)
		}
	}
	m := client.ManualPartitioner().ForTopic("t")
	if got := m.Partition(&client.Record{Partition: 2}, 3); got != 2 {
		t.Fatalf("manual: partition %d, want 2", got)
	}
}
