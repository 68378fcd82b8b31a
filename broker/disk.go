package broker

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// A node whose disk fills up cannot go on: Pebble treats a failed write to
// its write-ahead log as fatal, so a clustered node stops, and a single
// node refuses every write until it is restarted. The disk guard keeps a
// floor of free space under the data folder and refuses produce requests
// below it, with an error that says so, so that the writes already under
// way (memtable flushes, compactions, raft entries of other nodes, group
// commits) still find room. Produce resumes by itself once space is freed.

// defaultMinFreeDisk is the default floor. A node's two Pebble stores each
// flush memtables of up to 64 MiB, and compactions write their outputs
// before they delete their inputs: with 15 MiB kept free, a single node
// filling a 300 MiB disk still ran out of space flushing.
const (
	defaultMinFreeDisk = 512 << 20

	diskCheckInterval = time.Second
	// nearCheckInterval is how often the space is read once less than
	// twice the floor is free.
	nearCheckInterval = 100 * time.Millisecond
	// writeFactor is the disk bytes a produced byte takes before the
	// stores delete anything: the write-ahead log (the raft log in a
	// cluster) and the memtable flush.
	writeFactor = 2
	// diskRetry is the retry delay a DiskFullError asks for, between half
	// and all of it.
	diskRetry = 2 * time.Second
)

// statDisk returns the space free to unprivileged users on the file system
// holding dir. Tests replace it.
var statDisk = diskSpace

// diskGuard tracks the free space under a node's data folder. Between two
// reads of the disk it counts what produce takes, so a fast producer does
// not run past the floor in the time between them.
type diskGuard struct {
	node     int32
	dir      string
	floor    int64
	free     atomic.Int64 // as last read
	produced atomic.Int64 // bytes admitted since
	low      atomic.Bool
	logger   *slog.Logger
}

// newDiskGuard returns the guard of dir with the floor asked for: 0 for the
// default, negative for none. It returns nil when the guard is off or the
// disk cannot be read (an in-memory file system).
func newDiskGuard(node int32, dir string, minFree int64, logger *slog.Logger) *diskGuard {
	if minFree < 0 {
		return nil
	}
	free, err := statDisk(dir)
	if err != nil {
		logger.Warn("free disk space unknown: produce goes on whatever the space left", "dir", dir, "err", err)
		return nil
	}
	if minFree == 0 {
		minFree = defaultMinFreeDisk
	}
	g := &diskGuard{node: node, dir: dir, floor: minFree, logger: logger}
	g.set(free)
	return g
}

// run reads the free space every diskCheckInterval, or nearCheckInterval
// near the floor, until stop is closed.
func (g *diskGuard) run(stop <-chan struct{}) {
	t := time.NewTimer(diskCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		free, err := statDisk(g.dir)
		if err != nil {
			g.logger.Warn("cannot read the free disk space", "dir", g.dir, "err", err)
		} else {
			g.set(free)
		}
		if g.free.Load() < 2*g.floor {
			t.Reset(nearCheckInterval)
		} else {
			t.Reset(diskCheckInterval)
		}
	}
}

// set records the free space read and logs when it crosses the floor.
func (g *diskGuard) set(free int64) {
	g.free.Store(free)
	g.produced.Store(0)
	low := free < g.floor
	if g.low.Swap(low) == low {
		return
	}
	if low {
		g.logger.Error("disk almost full: produce is refused until space is freed",
			"node", g.node, "dir", g.dir, "free", byteSize(free), "min_free_disk", byteSize(g.floor))
	} else {
		g.logger.Info("disk space freed: produce resumes", "node", g.node, "dir", g.dir, "free", byteSize(free), "min_free_disk", byteSize(g.floor))
	}
}

// admit returns a *DiskFullError while the free space, less what produce
// took since it was read, is under the floor; else it counts n bytes.
func (g *diskGuard) admit(n int) error {
	free := g.free.Load() - writeFactor*g.produced.Load()
	if free < g.floor {
		return &DiskFullError{Node: g.node, Dir: g.dir, Free: max(free, 0), Floor: g.floor,
			RetryAfter: diskRetry/2 + rand.N(diskRetry/2)}
	}
	g.produced.Add(int64(n))
	return nil
}

// checkDisk refuses a produce of n bytes to p while the guard finds the
// disk almost full. A replica that does not lead is not checked: its
// append refuses the produce with the leader's address, which the client
// follows.
func checkDisk(g *diskGuard, p replica, n int) error {
	if g == nil {
		return nil
	}
	if r, ok := p.(leaderReplica); ok && !r.IsLeader() {
		return nil
	}
	return g.admit(n)
}

// freeBytes returns the free space last read, or -1 without a guard.
func (g *diskGuard) freeBytes() int64 {
	if g == nil {
		return -1
	}
	return g.free.Load()
}

// DiskFullError refuses a produce because the disk under the node's data
// folder has less free space than the node keeps (--min-free-disk). It
// matches ErrDiskFull.
type DiskFullError struct {
	Node       int32
	Dir        string
	Free       int64
	Floor      int64
	RetryAfter time.Duration
}

func (e *DiskFullError) Error() string {
	return fmt.Sprintf("node %d refuses writes: the disk of its data folder %s has %s free, under the %s it keeps free (--min-free-disk); free disk space there and produce resumes by itself",
		e.Node, e.Dir, byteSize(e.Free), byteSize(e.Floor))
}

// Is reports whether target is ErrDiskFull.
func (e *DiskFullError) Is(target error) bool { return target == ErrDiskFull }

// minFree returns the floor, or 0 without a guard.
func (g *diskGuard) minFree() int64 {
	if g == nil {
		return 0
	}
	return g.floor
}
