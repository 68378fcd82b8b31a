package broker

import (
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// DefaultAddr is the gRPC address `runnel serve` listens on, and the address
// clients dial, when none is given.
const DefaultAddr = "127.0.0.1:7070"

// Options configure a broker. The zero value works: an in-process broker
// with fsync before every acknowledgement.
type Options struct {
	// Addr is the TCP address to serve gRPC on, such as "127.0.0.1:7070" or
	// "127.0.0.1:0" for a port chosen by the OS. Empty means in-process
	// only: clients connect through DialContext.
	Addr string
	// HTTPAddr serves /metrics, /livez, /readyz and the admin views as JSON.
	// Empty means no HTTP server.
	HTTPAddr string
	// NodeID is this node's id. Zero means 1.
	NodeID int32
	// Cluster lists the cluster's nodes by id, this one included, with the
	// address each serves gRPC and raft on. Empty runs a single node
	// without raft. A new cluster bootstraps from it; a node restarted on
	// its data rejoins with what its data says.
	Cluster map[int32]string
	// NoSync acknowledges writes before they are fsynced. Faster; a crash of
	// the machine can lose acknowledged records.
	NoSync bool
	// MaxRecvMessageBytes bounds one gRPC message. Zero means 16 MiB: big
	// enough that an oversized batch reaches the broker and is refused with
	// a clear error rather than a transport one.
	MaxRecvMessageBytes int
	// MaxFetchBytes bounds one fetch response. Zero means 1 MiB.
	MaxFetchBytes int
	// MaxConcurrentStreams bounds the gRPC streams of one connection. Zero
	// means 1024.
	MaxConcurrentStreams uint32
	// MaxPendingBytes bounds each partition's accepted but not yet durable
	// bytes; over it, produce is refused with RESOURCE_EXHAUSTED. Zero
	// means 64 MiB.
	MaxPendingBytes int64
	// MinFreeDiskBytes is the free space the node keeps on the disk of its
	// data folder: below it, produce is refused with RESOURCE_EXHAUSTED
	// until space is freed, so that the writes already under way still
	// find room. Zero means 512 MiB; negative turns the check off.
	MinFreeDiskBytes int64
	// RetentionInterval is how often retention runs. Zero means one minute.
	RetentionInterval time.Duration
	// ShutdownTimeout bounds how long Close waits for requests in flight.
	// Zero means 10 seconds.
	ShutdownTimeout time.Duration
	// Logger receives the broker's logs. Nil means slog.Default().
	Logger *slog.Logger
	// FS is the filesystem for the data. Nil means the OS's. Tests pass an
	// in-memory one.
	FS vfs.FS
}

func (o *Options) ensureDefaults() {
	if o.NodeID == 0 {
		o.NodeID = 1
	}
	if o.Addr == "" && len(o.Cluster) > 0 {
		o.Addr = o.Cluster[o.NodeID]
	}
	if o.MaxRecvMessageBytes == 0 {
		o.MaxRecvMessageBytes = 16 << 20
	}
	if o.MaxFetchBytes == 0 {
		o.MaxFetchBytes = 1 << 20
	}
	if o.MaxConcurrentStreams == 0 {
		o.MaxConcurrentStreams = 1024
	}
	if o.MaxPendingBytes == 0 {
		o.MaxPendingBytes = 64 << 20
	}
	if o.RetentionInterval == 0 {
		o.RetentionInterval = time.Minute
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

func (o *Options) validate() error {
	if o.NodeID < 0 {
		return fmt.Errorf("broker: node id %d; use a positive id", o.NodeID)
	}
	for name, addr := range map[string]string{"addr": o.Addr, "http addr": o.HTTPAddr} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("broker: %s %q: %v; use HOST:PORT", name, addr, err)
		}
	}
	if len(o.Cluster) > 0 {
		if _, ok := o.Cluster[o.NodeID]; !ok {
			return fmt.Errorf("broker: node id %d is not in the cluster list; add %d=HOST:PORT to --cluster", o.NodeID, o.NodeID)
		}
		if o.FS != nil {
			return fmt.Errorf("broker: a cluster node keeps its raft logs on the OS filesystem; leave FS unset")
		}
	}
	if o.MaxRecvMessageBytes < 1<<20 {
		return fmt.Errorf("broker: max receive message bytes %d is below 1 MiB", o.MaxRecvMessageBytes)
	}
	return nil
}
