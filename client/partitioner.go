package client

import (
	"math/rand/v2"
)

// Partitioner assigns produced records to partitions. It hands out one
// TopicPartitioner per topic.
type Partitioner interface {
	// ForTopic returns the partitioner for one topic.
	ForTopic(topic string) TopicPartitioner
}

// TopicPartitioner picks partitions for the records of one topic. The
// client calls it for one record at a time, never concurrently, so it may
// keep state without locking.
type TopicPartitioner interface {
	// Partition returns the partition for r, in [0, n). n is the topic's
	// partition count; it can grow between calls.
	Partition(r *Record, n int) int
}

// stickyBytes is how many bytes of keyless records go to one partition
// before the sticky partitioner moves on: about one full batch.
const stickyBytes = 1 << 20

// KeyPartitioner returns the default partitioner, compatible with Kafka's: a
// record with a key goes to partition (murmur2(key) & 0x7fffffff) % n, so a
// key lands where Kafka's Java client would put it; records without a key
// stick to one partition for about a batch's worth of bytes (1 MiB) and
// then move to another at random.
func KeyPartitioner() Partitioner { return keyPartitioner{} }

type keyPartitioner struct{}

func (keyPartitioner) ForTopic(string) TopicPartitioner { return &stickyKey{cur: -1} }

type stickyKey struct {
	cur   int
	bytes int
}

func (p *stickyKey) Partition(r *Record, n int) int {
	if r.Key != nil {
		return KeyPartition(r.Key, n)
	}
	if p.cur < 0 || p.cur >= n || p.bytes >= stickyBytes {
		p.cur = pickOther(p.cur, n)
		p.bytes = 0
	}
	p.bytes += len(r.Value) + len(r.Key) + 16
	return p.cur
}

// pickOther returns a random partition in [0, n) other than cur when n > 1.
func pickOther(cur, n int) int {
	if n <= 1 {
		return 0
	}
	if cur < 0 || cur >= n {
		return rand.IntN(n)
	}
	next := rand.IntN(n - 1)
	if next >= cur {
		next++
	}
	return next
}

// KeyPartition returns the partition Kafka's default partitioner gives key
// among n partitions: (murmur2(key) & 0x7fffffff) % n.
func KeyPartition(key []byte, n int) int {
	return int(uint32(murmur2(key))&0x7fffffff) % n
}

// RoundRobinPartitioner returns a partitioner that gives each record the
// next partition in turn, whatever its key.
func RoundRobinPartitioner() Partitioner { return roundRobin{} }

type roundRobin struct{}

func (roundRobin) ForTopic(string) TopicPartitioner { return &roundRobinTopic{} }

type roundRobinTopic struct{ next int }

func (p *roundRobinTopic) Partition(_ *Record, n int) int {
	if p.next >= n {
		p.next = 0
	}
	out := p.next
	p.next++
	return out
}

// ManualPartitioner returns a partitioner that uses each record's own
// Partition field. A partition the topic does not have fails the record
// with ErrNotFound.
func ManualPartitioner() Partitioner { return manual{} }

type manual struct{}

func (manual) ForTopic(string) TopicPartitioner { return manual{} }

func (manual) Partition(r *Record, _ int) int { return int(r.Partition) }

// murmur2 is Kafka's murmur2 hash (org.apache.kafka.common.utils.Utils).
func murmur2(data []byte) int32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
		r    = 24
	)
	n := len(data)
	h := uint32(seed) ^ uint32(n)
	i := 0
	for ; i+4 <= n; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	switch n - i {
	case 3:
		h ^= uint32(data[i+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[i+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[i])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}
