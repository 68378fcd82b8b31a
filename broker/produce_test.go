package broker_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// syncGateFS holds the syncs of write-ahead logs while its gate is shut.
type syncGateFS struct {
	vfs.FS
	mu   sync.Mutex
	gate chan struct{} // nil: open; else closed when the gate opens
}

func (fs *syncGateFS) shut() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.gate == nil {
		fs.gate = make(chan struct{})
	}
}

func (fs *syncGateFS) open() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.gate != nil {
		close(fs.gate)
		fs.gate = nil
	}
}

func (fs *syncGateFS) pass() {
	fs.mu.Lock()
	g := fs.gate
	fs.mu.Unlock()
	if g != nil {
		<-g
	}
}

func (fs *syncGateFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return &gatedFile{File: f, fs: fs}, nil
}

func (fs *syncGateFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

func (fs *syncGateFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return fs.wrap(name, f, err)
}

func (fs *syncGateFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(newname, f, err)
}

type gatedFile struct {
	vfs.File
	fs *syncGateFS
}

func (f *gatedFile) Sync() error {
	f.fs.pass()
	return f.File.Sync()
}

func (f *gatedFile) SyncData() error {
	f.fs.pass()
	return f.File.SyncData()
}

func (f *gatedFile) SyncTo(length int64) (bool, error) {
	f.fs.pass()
	return f.File.SyncTo(length)
}

// gatedStream opens a single-node broker whose disk holds syncs while its
// gate is shut, creates topic with one partition and opens a produce
// stream, with a context that ends after 30 seconds. The gate is shut, and
// opens when the test ends.
func gatedStream(t *testing.T, topic string) (context.Context, *syncGateFS, runnelpb.BrokerClient, runnelpb.Broker_ProduceStreamClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	fs := &syncGateFS{FS: vfs.NewMem()}
	_, c, _ := open(t, broker.Options{FS: fs})
	createTopic(t, c, topic, 1, nil)
	ps, err := c.ProduceStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fs.shut()
	t.Cleanup(fs.open)
	return ctx, fs, c, ps
}

// closeAndCount ends ps, checks that no answer is left, and that topic's
// only partition ends at offset want.
func closeAndCount(t *testing.T, ctx context.Context, c runnelpb.BrokerClient, ps runnelpb.Broker_ProduceStreamClient, topic string, want int64) {
	t.Helper()
	if err := ps.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if resp, err := ps.Recv(); err == nil {
		t.Fatalf("an answer after the requests: %v", resp)
	}
	offs, err := c.ListOffsets(ctx, &runnelpb.ListOffsetsRequest{Topic: topic, At: &runnelpb.Position{At: &runnelpb.Position_End{End: true}}})
	if err != nil {
		t.Fatal(err)
	}
	if offs.EndOffset != want {
		t.Fatalf("end offset %d, want %d", offs.EndOffset, want)
	}
}

// TestLowerAcksAnswerBeforeEarlierBatchesAreDurable sends two acks=leader
// batches to one partition over one stream while the disk holds every
// sync: both are answered, the second without waiting for the first to be
// durable, and both are durable and readable once the syncs go through.
func TestLowerAcksAnswerBeforeEarlierBatchesAreDurable(t *testing.T) {
	ctx, fs, c, ps := gatedStream(t, "l")
	for i := range 2 {
		req := &runnelpb.ProduceRequest{RequestId: uint64(i), Topic: "l", Acks: runnelpb.Acks_ACKS_LEADER, Batch: batchOf("v")}
		if err := ps.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		resp, err := ps.Recv()
		if err != nil {
			t.Fatalf("answer %d while syncs are held: %v", i, err)
		}
		if resp.Error != nil || resp.RequestId != uint64(i) || resp.BaseOffset != int64(i) {
			t.Fatalf("answer %d: %v", i, resp)
		}
	}

	fs.open()
	closeAndCount(t, ctx, c, ps, "l", 2)
}

// TestProduceTimeoutAnswersUnknownThenWrites sends an acks=all batch with a
// short timeout while the disk holds every sync: it is answered
// OUTCOME_UNKNOWN, a batch after it on the same partition is answered once
// the syncs go through, and each is written once.
func TestProduceTimeoutAnswersUnknownThenWrites(t *testing.T) {
	ctx, fs, c, ps := gatedStream(t, "u")
	if err := ps.Send(&runnelpb.ProduceRequest{RequestId: 1, Topic: "u", TimeoutMs: 50, Batch: batchOf("a")}); err != nil {
		t.Fatal(err)
	}
	resp, err := ps.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.RequestId != 1 || resp.Error == nil || resp.Error.Reason != "OUTCOME_UNKNOWN" || resp.BaseOffset != -1 {
		t.Fatalf("answer past the timeout: %v", resp)
	}
	if err := ps.Send(&runnelpb.ProduceRequest{RequestId: 2, Topic: "u", Batch: batchOf("b")}); err != nil {
		t.Fatal(err)
	}
	fs.open()
	resp, err = ps.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.RequestId != 2 || resp.Error != nil || resp.BaseOffset != 1 {
		t.Fatalf("answer to the batch after it: %v", resp)
	}
	closeAndCount(t, ctx, c, ps, "u", 2)
}
