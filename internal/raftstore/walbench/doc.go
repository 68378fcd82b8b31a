// Package walbench measures raft-wal (github.com/hashicorp/raft-wal), one
// WAL per raft group, with the same driver as package raftstore's
// benchmarks, for the choice of the partition raft log store.
//
// It is its own module so that raft-wal stays out of runnel's module graph:
// raft-wal v0.4.0 requires github.com/hashicorp/go-msgpack v1.1.5, a
// retracted release that would replace the v0.5.5 raft-boltdb encodes the
// controller's log with, and it brings in bbolt and coreos/etcd besides.
//
//	cd internal/raftstore/walbench && go test -run XXX -bench . -count 5
package walbench
