package partition

// EntryOf returns the raft term and index of the entry a Replica's Append
// proposed, once its Wait returned without error.
func EntryOf(pd Pending) (term, index uint64) {
	if pd.w == nil {
		return 0, 0
	}
	<-pd.w.done
	return pd.w.res.term, pd.w.res.index
}

// QueueScans returns how many queue groups of p hold a scan cache, and
// how many log reads those caches made.
func (p *Partition) QueueScans() (caches, reads int) {
	qs, err := p.queues()
	if err != nil {
		return 0, 0
	}
	qs.mu.Lock()
	defer qs.mu.Unlock()
	for _, c := range qs.scans {
		caches++
		reads += c.reads
	}
	return caches, reads
}

// QueueParked returns how many leases of p wait in a long poll.
func (p *Partition) QueueParked() int {
	qs, err := p.queues()
	if err != nil {
		return 0
	}
	return int(qs.parked.Load())
}

// AllBatches returns every batch of l, in order.
var AllBatches = allBatches

// RaftLastIndex returns the index of the last entry in r's raft log.
func (r *Replica) RaftLastIndex() uint64 { return r.raft.LastIndex() }
