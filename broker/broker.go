package broker

import (
	"context"
	"errors"
	"fmt"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/runnel-dev/runnel/internal/pebbleenv"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/test/bufconn"

	"github.com/runnel-dev/runnel/log"
	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// Broker is one runnel node: it owns the node's storage and serves the gRPC
// API on a socket, in process, or both.
type Broker struct {
	opts   Options
	logger *slog.Logger
	store  *log.Store
	// paced is the file system of the node's stores, nil when Options.FS
	// was given.
	paced  *pebbleenv.PacedFS
	topics catalog
	met    *metrics
	// groups coordinates consumer groups; on a single node their offsets
	// are in offsets.
	groups  *coordinator
	offsets *fileOffsets
	// cluster is set when the node runs in a cluster.
	cluster *clusterNode
	// disk refuses produce when the data folder's disk is almost full;
	// nil when off.
	disk *diskGuard

	grpc   *grpc.Server
	health *health.Server
	lis    net.Listener
	inproc *bufconn.Listener
	http   *http.Server
	httpLn net.Listener

	// closing is closed when Close starts; long-lived streams watch it.
	closing   chan struct{}
	closeOnce sync.Once
	closeErr  error
	ready     atomic.Bool
	wg        sync.WaitGroup
}

// Open opens (or creates) the node's data in dir and starts serving.
func Open(dir string, opts Options) (*Broker, error) {
	opts.ensureDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.FS == nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("broker: create data dir: %w", err)
		}
	}
	b := &Broker{opts: opts, logger: opts.Logger, closing: make(chan struct{})}
	if opts.FS == nil {
		// The node's stores share one disk and one pace for their
		// flushes and compactions (see pebbleenv.PacedFS).
		b.paced = pebbleenv.NewPacedFS(nil)
	}

	clustered := len(opts.Cluster) > 0
	store, err := log.Open(filepath.Join(dir, "log"), log.Options{
		FS: b.storeFS(),
		// In a cluster the raft log is the durable copy of every batch; the
		// partition logs are rebuilt from it after a crash, so they need
		// no write-ahead log of their own: each batch is written once
		// less, and reaches the disk with the next memtable flush.
		NoSync:            opts.NoSync || clustered,
		NoWAL:             clustered,
		RetentionInterval: opts.RetentionInterval,
		Logger:            opts.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("broker: open storage: %w", err)
	}
	b.store = store
	fail := func(err error) (*Broker, error) {
		b.Close()
		return nil, err
	}

	if opts.Addr != "" {
		b.lis, err = net.Listen("tcp", opts.Addr)
		if err != nil {
			return fail(fmt.Errorf("broker: listen on %s: %w", opts.Addr, err))
		}
	}
	apps := b.lis
	if clustered {
		if apps, err = b.openCluster(dir); err != nil {
			return fail(err)
		}
	} else {
		regPath := filepath.Join(dir, "topics.json")
		if opts.FS != nil {
			// An in-memory filesystem keeps the registry in memory too.
			regPath = ""
		}
		reg, err := openRegistry(opts.NodeID, regPath, store, opts.MaxPendingBytes)
		if err != nil {
			return fail(fmt.Errorf("broker: %w", err))
		}
		reg.self = nodeMeta{ID: opts.NodeID, Addr: b.Addr(), HTTP: opts.HTTPAddr}
		b.topics = reg
		offPath := filepath.Join(dir, "offsets.json")
		if opts.FS != nil {
			offPath = ""
		}
		offs, err := openFileOffsets(offPath, opts.NoSync)
		if err != nil {
			return fail(fmt.Errorf("broker: %w", err))
		}
		b.offsets = offs
		b.groups = newCoordinator(offs, b.partitionCount, opts.Logger)
		go b.groups.run(b.closing)
	}
	if opts.FS == nil {
		b.disk = newDiskGuard(opts.NodeID, dir, opts.MinFreeDiskBytes, opts.Logger)
		if b.disk != nil {
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				b.disk.run(b.closing)
			}()
		}
	}
	b.met = newMetrics(b)

	b.grpc = grpc.NewServer(
		grpc.MaxRecvMsgSize(opts.MaxRecvMessageBytes),
		grpc.MaxConcurrentStreams(opts.MaxConcurrentStreams),
	)
	runnelpb.RegisterBrokerServer(b.grpc, &service{b: b})
	runnelpb.RegisterGroupsServer(b.grpc, &groupsService{b: b})
	runnelpb.RegisterQueuesServer(b.grpc, &queuesService{b: b})
	b.health = health.NewServer()
	healthpb.RegisterHealthServer(b.grpc, b.health)
	reflection.Register(b.grpc)

	b.inproc = bufconn.Listen(1 << 20)
	b.serveGRPC(b.inproc)
	if apps != nil {
		b.serveGRPC(apps)
	}
	if opts.HTTPAddr != "" {
		if err := b.startHTTP(opts.HTTPAddr); err != nil {
			return fail(err)
		}
	}
	if clustered {
		b.cluster.start()
	}
	b.ready.Store(true)
	b.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	b.logger.Info("broker started", "node", opts.NodeID, "addr", b.Addr(), "http", b.HTTPAddr(), "data", dir, "fsync", !opts.NoSync)
	return b, nil
}

func (b *Broker) serveGRPC(l net.Listener) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		if err := b.grpc.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			b.logger.Error("grpc server stopped", "err", err)
		}
	}()
}

// Addr returns the address clients dial: the TCP address when the broker
// listens on one, else "inprocess" (dial it with DialContext).
func (b *Broker) Addr() string {
	if b.lis != nil {
		return b.lis.Addr().String()
	}
	return "inprocess"
}

// HTTPAddr returns the address of the HTTP server, or "" when there is none.
func (b *Broker) HTTPAddr() string {
	if b.httpLn != nil {
		return b.httpLn.Addr().String()
	}
	return ""
}

// Stats returns the storage counters: appends, records, bytes and fsyncs
// since Open.
func (b *Broker) Stats() log.Stats { return b.store.Stats() }

// partitionCount returns a topic's partition count, 0 when there is no
// such topic.
func (b *Broker) partitionCount(topic string) int32 {
	t, err := b.topics.get(topic)
	if err != nil {
		return 0
	}
	return int32(len(t.assign))
}

// storeFS returns the file system for the node's Pebble stores.
func (b *Broker) storeFS() vfs.FS {
	if b.paced != nil {
		return b.paced
	}
	return b.opts.FS
}

// NodeID returns this node's id.
func (b *Broker) NodeID() int32 { return b.opts.NodeID }

// DialContext opens an in-process connection to the broker. Pass it to
// client.Dialer to use an embedded broker without a socket.
func (b *Broker) DialContext(ctx context.Context, _ string) (net.Conn, error) {
	return b.inproc.DialContext(ctx)
}

// Close stops serving, waits up to ShutdownTimeout for requests in flight,
// and closes the storage. It is safe to call more than once.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.ready.Store(false)
		if b.paced != nil {
			// The stores' last flushes hold up the exit; do them at once.
			b.paced.Unpace()
		}
		if b.cluster != nil {
			b.cluster.catalog.handOff()
		}
		close(b.closing)
		if b.health != nil {
			b.health.Shutdown()
		}
		if b.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			b.http.Shutdown(ctx)
			cancel()
		}
		if b.grpc != nil {
			done := make(chan struct{})
			go func() { b.grpc.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-time.After(b.opts.ShutdownTimeout):
				b.grpc.Stop()
				<-done
			}
		}
		b.wg.Wait()
		if b.cluster != nil {
			if err := b.cluster.close(); err != nil {
				b.logger.Warn("closing the cluster node", "err", err)
			}
		}
		if b.offsets != nil {
			if err := b.offsets.close(); err != nil {
				b.logger.Warn("closing the committed offsets", "err", err)
			}
		}
		if b.store != nil {
			b.closeErr = b.store.Close()
		}
		b.logger.Info("broker stopped", "node", b.opts.NodeID)
	})
	return b.closeErr
}
