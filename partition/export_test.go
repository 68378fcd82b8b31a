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
