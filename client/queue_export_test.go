package client

import "time"

// SetLeaseWait sets how long a queue's long polls wait, for the queues
// opened until the returned function restores it.
func SetLeaseWait(d time.Duration) (restore func()) {
	leaseWait = d
	return func() { leaseWait = leaseWaitDefault }
}

// QueuePolls returns, per partition, how many long polls q's fetchers
// started and ended: odd while one is in flight.
func QueuePolls(q *Queue) []int64 {
	n := make([]int64, len(q.parts))
	for i, qp := range q.parts {
		n[i] = qp.polls.Load()
	}
	return n
}

// QueueFreeSlots returns how much of q's prefetch is free: neither leased
// ahead of Next nor taken by a fetcher for its next lease.
func QueueFreeSlots(q *Queue) int { return len(q.slots) }

// SetNextTook makes q's Next call f between taking a delivery from the
// prefetch and claiming it. Set it before the first Next.
func SetNextTook(q *Queue, f func()) { q.nextTook = f }

// QueuePrefetched returns how many deliveries wait in q's prefetch for
// Next.
func QueuePrefetched(q *Queue) int { return len(q.out) }

// SetSettleSending makes q's settle loops call f before each settle call
// they send. Set it before the first settle.
func SetSettleSending(q *Queue, f func()) { q.settleSending = f }
