package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/runnel-dev/runnel/broker"
)

func serveCmd() *cobra.Command {
	var (
		dataDir  string
		addr     string
		httpAddr string
		noSync   bool
		logLevel string
		retCheck time.Duration
		nodeID   int
		cluster  string
		minFree  string
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a broker node",
		Long: `Run a broker node on DATA, serving gRPC on --addr and, with --http,
/metrics, /livez and /readyz. Writes DATA/runnel.pid. SIGTERM or SIGINT
shuts it down cleanly.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			logger, err := newLogger(os.Stderr, logLevel)
			if err != nil {
				return err
			}
			peers, err := parseCluster(cluster)
			if err != nil {
				return err
			}
			minFreeBytes, err := parseMinFree(minFree)
			if err != nil {
				return err
			}
			if len(peers) > 0 && !cmd.Flags().Changed("addr") {
				addr = "" // the node's entry in --cluster
			}
			b, err := broker.Open(dataDir, broker.Options{
				NodeID:            int32(nodeID),
				Cluster:           peers,
				Addr:              addr,
				HTTPAddr:          httpAddr,
				NoSync:            noSync,
				Logger:            logger,
				RetentionInterval: retCheck,
				MinFreeDiskBytes:  minFreeBytes,
			})
			if err != nil {
				return err
			}
			pidFile := filepath.Join(dataDir, "runnel.pid")
			if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
				b.Close()
				return fmt.Errorf("write %s: %w", pidFile, err)
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			<-ctx.Done()
			logger.Info("shutting down")
			err = b.Close()
			os.Remove(pidFile)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data", "runnel-data", "data directory")
	f.StringVar(&addr, "addr", broker.DefaultAddr, "gRPC listen address HOST:PORT")
	f.IntVar(&nodeID, "id", 1, "this node's id in --cluster")
	f.StringVar(&cluster, "cluster", "", "the cluster's nodes, ID=HOST:PORT,... (this node included); empty runs a single node")
	f.StringVar(&httpAddr, "http", "", "HTTP listen address for /metrics, /livez, /readyz (off when empty)")
	f.BoolVar(&noSync, "no-sync", false, "acknowledge writes before fsync (faster; a machine crash can lose acknowledged records)")
	f.DurationVar(&retCheck, "retention-check", time.Minute, "how often retention.ms and retention.bytes are enforced")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&minFree, "min-free-disk", "auto", "free space to keep on the data folder's disk, as 512MiB or 2GB: below it produce is refused until space is freed (auto: 512MiB; 0: no floor)")
	return cmd
}

// parseMinFree parses --min-free-disk into broker.Options.MinFreeDiskBytes:
// "auto" is 0 (the default floor), "0" is -1 (none).
func parseMinFree(s string) (int64, error) {
	if s == "auto" {
		return 0, nil
	}
	n, err := parseBytes(s)
	if err != nil {
		return 0, fmt.Errorf("--min-free-disk %q: %v; use a size such as 512MiB or 2GB, auto, or 0 for no floor", s, err)
	}
	if n == 0 {
		return -1, nil
	}
	return n, nil
}

// byteUnits are the suffixes parseBytes takes, in lower case.
var byteUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1000,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1000 * 1000,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1000 * 1000 * 1000,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1000 * 1000 * 1000 * 1000,
}

// parseBytes parses a size: a whole number with an optional unit, B, KiB,
// MiB, GiB, TiB (K, M, G, T for short) or KB, MB, GB, TB.
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, errors.New("not a size")
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, err
	}
	unit, ok := byteUnits[strings.ToLower(strings.TrimSpace(s[i:]))]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q", s[i:])
	}
	if n > math.MaxInt64/unit {
		return 0, errors.New("too large")
	}
	return n * unit, nil
}

// parseCluster parses --cluster: "1=host:port,2=host:port,...".
func parseCluster(s string) (map[int32]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := map[int32]string{}
	for _, part := range strings.Split(s, ",") {
		idStr, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		id, err := strconv.Atoi(idStr)
		if !ok || err != nil || id <= 0 || addr == "" {
			return nil, fmt.Errorf("--cluster %q: each entry is ID=HOST:PORT with ID > 0, as in 1=127.0.0.1:7070,2=127.0.0.1:7071", part)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("--cluster: node %d address %q: %v", id, addr, err)
		}
		if _, dup := out[int32(id)]; dup {
			return nil, fmt.Errorf("--cluster: node id %d appears twice", id)
		}
		out[int32(id)] = addr
	}
	return out, nil
}
