package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/runnel-dev/runnel/client"
)

// TestDiskGuardCountsProduceBetweenReads checks that the guard refuses
// produce once what it admitted since the last read of the disk, twice
// over, would take the free space under the floor, without waiting for the
// next read; and that a read starts the count again.
func TestDiskGuardCountsProduceBetweenReads(t *testing.T) {
	g := &diskGuard{node: 1, dir: "/data", floor: 100, logger: slog.New(slog.DiscardHandler)}
	g.set(1000)
	for _, n := range []int{300, 100, 51} { // 1000 - 2*451 = 98 left
		if err := g.admit(n); err != nil {
			t.Fatalf("admit %d: %v", n, err)
		}
	}
	err := g.admit(1)
	var dfe *DiskFullError
	if !errors.As(err, &dfe) || !errors.Is(err, ErrDiskFull) || dfe.Free != 98 || dfe.Floor != 100 || dfe.RetryAfter <= 0 {
		t.Fatalf("admit with 98 bytes left under a floor of 100: %#v", err)
	}
	g.set(1000)
	if err := g.admit(1); err != nil {
		t.Fatalf("admit after a read found 1000 bytes free: %v", err)
	}
}

// openWithRecord opens a single broker in dir with opts, on a loopback
// port and logging to the returned watch, creates topic "t" of one
// partition and produces value to it.
func openWithRecord(t *testing.T, ctx context.Context, dir string, opts Options, value string) (*Broker, *client.Client, *logWatch) {
	t.Helper()
	logs := newLogWatch(testLogger().Handler())
	opts.Addr, opts.Logger = "127.0.0.1:0", slog.New(logs)
	b, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	c, _ := clientWithTopic(t, ctx, []string{b.Addr()}, "t", 1, 1)
	if err := c.ProduceSync(ctx, &client.Record{Topic: "t", Value: []byte(value)}); err != nil {
		t.Fatal(err)
	}
	return b, c, logs
}

// TestDiskGuardRefusesProduceAndResumes runs a broker whose disk reads
// below its floor: produce is refused with an error that says why, the
// records acknowledged before stay readable, and produce resumes by itself
// once the disk has room again.
func TestDiskGuardRefusesProduceAndResumes(t *testing.T) {
	var free atomic.Int64
	free.Store(10 << 30)
	real := statDisk
	statDisk = func(string) (int64, error) { return free.Load(), nil }
	t.Cleanup(func() { statDisk = real })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, c, logs := openWithRecord(t, ctx, t.TempDir(), Options{MinFreeDiskBytes: 1 << 30}, "before")

	// Until the guard reads the disk again, produce goes on; the records
	// refused for the disk must not be written.
	free.Store(300 << 20)
	want := []string{"before"}
	var last error
	i := 0
	eventually(t, ctx, "produce to be refused", 10*time.Second, func() (bool, string) {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		i++
		v := fmt.Sprintf("probe-%d", i)
		if last = c.ProduceSync(pctx, &client.Record{Topic: "t", Value: []byte(v)}); last == nil {
			want = append(want, v)
		}
		return last != nil && strings.Contains(last.Error(), "refuses writes"), fmt.Sprint(last)
	})
	for _, want := range []string{"node 1 refuses writes", "300.0 MiB free, under the 1.0 GiB it keeps free (--min-free-disk)", "produce resumes by itself"} {
		if !strings.Contains(last.Error(), want) {
			t.Errorf("error %q lacks %q", last, want)
		}
	}
	if !errors.Is(last, client.ErrResourceExhausted) {
		t.Errorf("error %v is not client.ErrResourceExhausted", last)
	}
	if !logs.logged("disk almost full: produce is refused until space is freed", 1) {
		t.Error("the refusal was not logged")
	}

	free.Store(10 << 30)
	eventually(t, ctx, "produce to resume", 10*time.Second, func() (bool, string) {
		err := c.ProduceSync(ctx, &client.Record{Topic: "t", Value: []byte("after")})
		return err == nil, fmt.Sprint(err)
	})
	if !logs.logged("disk space freed: produce resumes", 1) {
		t.Error("the resumption was not logged")
	}
	want = append(want, "after")
	var got []string
	for r, err := range c.Consume(ctx, "t", 0, client.Start()) {
		if err != nil {
			t.Fatal(err)
		}
		if got = append(got, string(r.Value)); r.Offset == int64(len(want)-1) {
			break
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("partition holds %v, want %v", got, want)
	}
}

// syncFailFS is an in-memory file system whose write-ahead log files fail
// to sync, as on a full disk, once fail is set.
type syncFailFS struct {
	vfs.FS
	fail *atomic.Bool
}

func (fs syncFailFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return syncFailFile{File: f, fail: fs.fail}, nil
}

func (fs syncFailFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

func (fs syncFailFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(newname, f, err)
}

type syncFailFile struct {
	vfs.File
	fail *atomic.Bool
}

func (f syncFailFile) err() error {
	if f.fail.Load() {
		return syscall.ENOSPC
	}
	return nil
}

func (f syncFailFile) Sync() error {
	if err := f.err(); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f syncFailFile) SyncData() error {
	if err := f.err(); err != nil {
		return err
	}
	return f.File.SyncData()
}

func (f syncFailFile) SyncTo(length int64) (bool, error) {
	if err := f.err(); err != nil {
		return false, err
	}
	return f.File.SyncTo(length)
}

// TestSyncFailureMakesNodeUnready checks that a node whose write-ahead
// log failed to sync (the disk filled with the floor off) says so in
// /readyz and its log, instead of refusing every write while it reports
// ready.
func TestSyncFailureMakesNodeUnready(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var fail atomic.Bool
	b, c, logs := openWithRecord(t, ctx, "data", Options{FS: syncFailFS{FS: vfs.NewMem(), fail: &fail}, MinFreeDiskBytes: -1}, "before")
	if err := b.readiness(); err != nil {
		t.Fatalf("ready before the failure: %v", err)
	}

	fail.Store(true)
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	err := c.ProduceSync(pctx, &client.Record{Topic: "t", Value: []byte("lost")})
	pcancel()
	if err == nil {
		t.Fatal("produce acknowledged although its sync failed")
	}
	err = b.readiness()
	if err == nil || !strings.Contains(err.Error(), "node 1 takes no more writes") || !strings.Contains(err.Error(), "no space left on device") ||
		!strings.Contains(err.Error(), "then restart the node") {
		t.Fatalf("readiness after a failed sync: %v", err)
	}
	if !logs.logged("write-ahead log sync failed: the log takes no more writes until the store is opened again; if the disk is full, free space and restart", -1) {
		t.Error("the failed sync was not logged")
	}
}
