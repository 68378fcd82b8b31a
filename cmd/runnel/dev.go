package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// devNode is one node of a `runnel dev` cluster, as written to cluster.json.
type devNode struct {
	ID   int      `json:"id"`
	Addr string   `json:"addr"`
	HTTP string   `json:"http"`
	PID  int      `json:"pid"`
	Data string   `json:"data"`
	Cmd  []string `json:"cmd"`
}

// devCluster is DIR/cluster.json.
type devCluster struct {
	Brokers string    `json:"brokers"`
	Nodes   []devNode `json:"nodes"`
}

func devCmd() *cobra.Command {
	var (
		nodes   int
		dataDir string
		port    int
		noSync  bool
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local cluster of runnel serve processes on 127.0.0.1",
		Long: `Start NODES runnel serve processes on 127.0.0.1 forming one cluster, print
RUNNEL_BROKERS=a,b,c and write DIR/cluster.json with each node's id, addresses,
pid, data folder and the argv that starts it again. Ctrl-C stops them all.
A node that dies is not restarted: run its "cmd" from cluster.json to bring
it back. --port 0 picks free ports.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			lc, err := startLocalCluster(ctx, localClusterConfig{Nodes: nodes, Dir: dataDir, Port: port, NoSync: noSync, Stderr: cmd.ErrOrStderr()})
			if err != nil {
				return err
			}
			cluster := lc.cluster
			fmt.Fprintf(cmd.OutOrStdout(), "RUNNEL_BROKERS=%s\n", cluster.Brokers)
			fmt.Fprintf(cmd.ErrOrStderr(), "%d nodes ready; cluster.json and node logs in %s; Ctrl-C stops them\n", nodes, dataDir)
			<-ctx.Done()
			fmt.Fprintln(cmd.ErrOrStderr(), "stopping the nodes")
			lc.Stop()
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&nodes, "nodes", 3, "number of nodes")
	f.StringVar(&dataDir, "data", "runnel-dev", "folder for the nodes' data, logs and cluster.json")
	f.IntVar(&port, "port", 7070, "gRPC port of node 1; node N listens on PORT+N-1 and serves HTTP on PORT+100+N-1; 0 picks free ports")
	f.BoolVar(&noSync, "no-sync", false, "run the nodes with --no-sync")
	return cmd
}

// localClusterConfig is a cluster of runnel serve processes on 127.0.0.1.
type localClusterConfig struct {
	Nodes  int
	Dir    string
	Port   int // 0 picks free ports
	NoSync bool
	// Stderr receives a line when a node exits.
	Stderr io.Writer
}

// localCluster is a running cluster of runnel serve processes.
type localCluster struct {
	cluster devCluster
	https   []string
	procs   []*exec.Cmd
	exited  []chan struct{}
}

// startLocalCluster starts the nodes, writes DIR/cluster.json and waits
// until every node is ready. On error, nodes already started are stopped.
func startLocalCluster(ctx context.Context, cfg localClusterConfig) (*localCluster, error) {
	if cfg.Nodes < 1 || cfg.Nodes > 9 {
		return nil, fmt.Errorf("--nodes %d: use 1 to 9", cfg.Nodes)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the runnel binary: %w", err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	addrs, https, err := devPorts(cfg.Nodes, cfg.Port)
	if err != nil {
		return nil, err
	}
	var peers []string
	for i, a := range addrs {
		peers = append(peers, fmt.Sprintf("%d=%s", i+1, a))
	}
	lc := &localCluster{cluster: devCluster{Brokers: strings.Join(addrs, ",")}, https: https}
	for i := range cfg.Nodes {
		data, err := filepath.Abs(filepath.Join(cfg.Dir, fmt.Sprintf("node%d", i+1)))
		if err != nil {
			lc.Stop()
			return nil, err
		}
		argv := []string{self, "serve", "--id", strconv.Itoa(i + 1), "--addr", addrs[i], "--http", https[i],
			"--data", data, "--cluster", strings.Join(peers, ",")}
		if cfg.NoSync {
			argv = append(argv, "--no-sync")
		}
		logf, err := os.OpenFile(filepath.Join(cfg.Dir, fmt.Sprintf("node%d.log", i+1)), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			lc.Stop()
			return nil, err
		}
		p := exec.Command(argv[0], argv[1:]...)
		p.Stdout, p.Stderr = logf, logf
		if err := p.Start(); err != nil {
			logf.Close()
			lc.Stop()
			return nil, fmt.Errorf("start node %d: %w", i+1, err)
		}
		lc.procs = append(lc.procs, p)
		// Reap a node as soon as it exits, so a killed node leaves no
		// zombie behind and its pid is free.
		done := make(chan struct{})
		lc.exited = append(lc.exited, done)
		go func(id int) {
			defer close(done)
			defer logf.Close()
			err := p.Wait()
			if cfg.Stderr != nil {
				fmt.Fprintf(cfg.Stderr, "node %d exited: %v\n", id, exitStatus(err))
			}
		}(i + 1)
		lc.cluster.Nodes = append(lc.cluster.Nodes, devNode{ID: i + 1, Addr: addrs[i], HTTP: https[i], PID: p.Process.Pid, Data: data, Cmd: argv})
	}
	data, _ := json.MarshalIndent(lc.cluster, "", "  ")
	if err := os.WriteFile(filepath.Join(cfg.Dir, "cluster.json"), append(data, '\n'), 0o644); err != nil {
		lc.Stop()
		return nil, err
	}
	if err := waitReady(ctx, https, 60*time.Second); err != nil {
		lc.Stop()
		return nil, fmt.Errorf("%w; see the node logs in %s", err, cfg.Dir)
	}
	return lc, nil
}

// Stop sends SIGTERM to every node and waits until all have exited.
func (lc *localCluster) Stop() {
	for _, p := range lc.procs {
		p.Process.Signal(syscall.SIGTERM)
	}
	for _, e := range lc.exited {
		<-e
	}
}

// devPorts returns the gRPC and HTTP addresses of n nodes.
func devPorts(n, base int) (addrs, https []string, err error) {
	for i := range n {
		if base == 0 {
			a, err := freePort()
			if err != nil {
				return nil, nil, err
			}
			h, err := freePort()
			if err != nil {
				return nil, nil, err
			}
			addrs, https = append(addrs, a), append(https, h)
			continue
		}
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", base+i))
		https = append(https, fmt.Sprintf("127.0.0.1:%d", base+100+i))
	}
	return addrs, https, nil
}

// freePort asks the OS for a free port on 127.0.0.1.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitReady polls every node's /readyz until all answer 200.
func waitReady(ctx context.Context, https []string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for _, h := range https {
		for {
			resp, err := client.Get("http://" + h + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case <-ctx.Done():
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					return fmt.Errorf("node at %s not ready within %s", h, limit)
				}
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
