package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
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
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a broker node",
		Long: `Run a broker node on DATA, serving gRPC on --addr and, with --http,
/metrics, /livez and /readyz. Writes DATA/runnel.pid. SIGTERM or SIGINT
shuts it down cleanly.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: use debug, info, warn or error", logLevel)
			}
			logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			b, err := broker.Open(dataDir, broker.Options{
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
	f.StringVar(&httpAddr, "http", "", "HTTP listen address for /metrics, /livez, /readyz (off when empty)")
	f.BoolVar(&noSync, "no-sync", false, "acknowledge writes before fsync (faster; a machine crash can lose acknowledged records)")
	f.DurationVar(&retCheck, "retention-check", time.Minute, "how often retention.ms and retention.bytes are enforced")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	return cmd
}
