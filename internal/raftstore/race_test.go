//go:build race

package raftstore

// raceEnabled reports whether the race detector is on. Its checkptr checks
// abort inside github.com/boltdb/bolt v1.3.1, which raft-boltdb uses
// ("converted pointer straddles multiple allocations" in Bucket.write), so
// raft-boltdb is tested and measured only without it.
const raceEnabled = true
