package main

import (
	"context"
	"fmt"
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
	return cmd
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
