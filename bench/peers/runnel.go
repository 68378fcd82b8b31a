package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/runnel-dev/runnel/bench"
	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
)

// runnelNodes are runnel brokers in this process: one embedded broker, or
// three cluster nodes on 127.0.0.1 (as broker/cluster_test.go runs them),
// with a client connected to them.
type runnelNodes struct {
	brokers []*broker.Broker
	c       *client.Client
	label   string
}

// startRunnel starts nodes brokers with their data in subfolders of dir,
// and a client with copts. With inProcess a single broker is reached
// without a socket; otherwise the client dials 127.0.0.1. Produce acks are
// all, the client's default.
func startRunnel(ctx context.Context, nodes int, sync, inProcess bool, dir string, copts ...client.Option) (*runnelNodes, error) {
	if nodes != 1 && nodes != 3 {
		return nil, fmt.Errorf("runnel: %d nodes; use 1 or 3", nodes)
	}
	quiet := slog.New(slog.DiscardHandler)
	rn := &runnelNodes{}
	if nodes == 1 {
		opts := broker.Options{NoSync: !sync, Logger: quiet, HTTPAddr: "127.0.0.1:0"}
		if !inProcess {
			opts.Addr = "127.0.0.1:0"
		}
		b, err := broker.Open(filepath.Join(dir, "node1"), opts)
		if err != nil {
			return nil, err
		}
		rn.brokers = append(rn.brokers, b)
		var copt client.Option
		if inProcess {
			copt = client.Dialer(b.DialContext)
			rn.label = "embedded broker, in-process connection"
		} else {
			copt = client.Brokers(b.Addr())
			rn.label = "embedded broker, loopback TCP"
		}
		if rn.c, err = client.New(ctx, append(copts, copt)...); err != nil {
			rn.close()
			return nil, err
		}
		return rn, nil
	}
	ports, err := freePorts(nodes)
	if err != nil {
		return nil, err
	}
	peers := map[int32]string{}
	var addrs []string
	for i, p := range ports {
		a := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		peers[int32(i+1)] = a
		addrs = append(addrs, a)
	}
	for i := range nodes {
		b, err := broker.Open(filepath.Join(dir, fmt.Sprintf("node%d", i+1)), broker.Options{
			NodeID: int32(i + 1), Cluster: peers, NoSync: !sync, Logger: quiet, HTTPAddr: "127.0.0.1:0",
		})
		if err != nil {
			rn.close()
			return nil, err
		}
		rn.brokers = append(rn.brokers, b)
	}
	rn.label = fmt.Sprintf("cluster of %d nodes in one process, loopback TCP", nodes)
	if rn.c, err = client.New(ctx, append(copts, client.Brokers(addrs...))...); err != nil {
		rn.close()
		return nil, err
	}
	return rn, nil
}

// createTopic creates the run's topic, retrying while a new cluster elects
// its controller and the nodes register, and waits until every partition
// is led by its preferred replica so the run does not measure elections.
func (rn *runnelNodes) createTopic(ctx context.Context, topic string, partitions, replicas int) error {
	if len(rn.brokers) == 1 {
		_, err := rn.c.CreateTopic(ctx, topic, partitions, replicas, nil)
		return err
	}
	var lastErr error
	err := waitFor(ctx, 60*time.Second, func() bool {
		_, lastErr = rn.c.CreateTopic(ctx, topic, partitions, replicas, nil)
		// Already there: an earlier attempt whose answer was lost.
		return lastErr == nil || errors.Is(lastErr, client.ErrAlreadyExists)
	})
	if err != nil {
		return fmt.Errorf("create topic %s: %w (last: %v)", topic, err, lastErr)
	}
	err = waitFor(ctx, 60*time.Second, func() bool {
		info, err := rn.c.DescribeTopic(ctx, topic)
		if err != nil || len(info.Partitions) != partitions {
			return false
		}
		for _, p := range info.Partitions {
			if len(p.Replicas) != replicas || p.Leader != p.Replicas[0] {
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("topic %s: partitions not led by their preferred replicas: %w", topic, err)
	}
	return nil
}

// fsyncs returns the fsyncs the nodes have counted (write-ahead log and
// raft log), or -1 when they cannot be read.
func (rn *runnelNodes) fsyncs(ctx context.Context) int64 {
	var urls []string
	for _, b := range rn.brokers {
		urls = append(urls, "http://"+b.HTTPAddr()+"/metrics")
	}
	n, err := bench.ScrapeFsyncs(ctx, urls)
	if err != nil {
		return -1
	}
	return n
}

// close closes the client and the brokers.
func (rn *runnelNodes) close() {
	if rn.c != nil {
		rn.c.Close()
	}
	for _, b := range rn.brokers {
		b.Close()
	}
}
