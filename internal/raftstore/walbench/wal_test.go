package walbench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	wal "github.com/hashicorp/raft-wal"

	"github.com/runnel-dev/runnel/internal/raftstore/storebench"
)

// openWALPerGroup opens one raft-wal per group, with its default 64 MiB
// segments. raft-wal does not count its fsyncs: each StoreLogs makes one.
func openWALPerGroup(dir string, groups int) (storebench.Stores, error) {
	var wals []*wal.WAL
	closeAll := func() error {
		var errs []error
		for _, w := range wals {
			errs = append(errs, w.Close())
		}
		return errors.Join(errs...)
	}
	st := storebench.Stores{Close: closeAll}
	for g := range groups {
		gdir := filepath.Join(dir, fmt.Sprintf("group-%d", g))
		if err := os.Mkdir(gdir, 0o755); err != nil {
			closeAll()
			return storebench.Stores{}, err
		}
		w, err := wal.Open(gdir)
		if err != nil {
			closeAll()
			return storebench.Stores{}, err
		}
		wals = append(wals, w)
		st.Logs = append(st.Logs, w)
	}
	return st, nil
}

var sizes = []struct {
	name string
	size int
}{
	{"16KiB", 16 << 10},
	{"1MiB", 1 << 20},
}

// BenchmarkStoreLogs matches raftstore's BenchmarkStoreLogs.
func BenchmarkStoreLogs(b *testing.B) {
	for _, size := range sizes {
		for _, groups := range []int{1, 6} {
			b.Run(fmt.Sprintf("size=%s/groups=%d/store=wal", size.name, groups), func(b *testing.B) {
				storebench.StoreLogs(b, openWALPerGroup, groups, size.size, 0)
			})
		}
	}
}

// BenchmarkStoreLogsTruncate matches raftstore's BenchmarkStoreLogsTruncate.
func BenchmarkStoreLogsTruncate(b *testing.B) {
	for _, groups := range []int{1, 6} {
		b.Run(fmt.Sprintf("size=1MiB/groups=%d/store=wal", groups), func(b *testing.B) {
			storebench.StoreLogs(b, openWALPerGroup, groups, 1<<20, 64)
		})
	}
}

// BenchmarkGetLog matches raftstore's BenchmarkGetLog.
func BenchmarkGetLog(b *testing.B) {
	for _, size := range sizes {
		for _, groups := range []int{1, 6} {
			b.Run(fmt.Sprintf("size=%s/groups=%d/store=wal", size.name, groups), func(b *testing.B) {
				storebench.GetLog(b, openWALPerGroup, groups, size.size, (32<<20)/size.size)
			})
		}
	}
}
