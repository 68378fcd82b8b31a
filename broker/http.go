package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func (b *Broker) startHTTP(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("broker: listen for http on %s: %w", addr, err)
	}
	b.httpLn = ln
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(b.met.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := b.readiness(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /v1/topics", func(w http.ResponseWriter, r *http.Request) {
		s := &service{b: b}
		var out []any
		for _, t := range b.topics.list() {
			out = append(out, s.topicInfo(t))
		}
		writeJSON(w, out)
	})
	mux.HandleFunc("GET /v1/topics/{name}", func(w http.ResponseWriter, r *http.Request) {
		t, err := b.topics.get(r.PathValue("name"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		writeJSON(w, (&service{b: b}).topicInfo(t))
	})
	// Go's profiler, for finding where a node spends its time:
	// go tool pprof http://HOST:PORT/debug/pprof/profile?seconds=10
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	b.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		if err := b.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.logger.Error("http server stopped", "err", err)
		}
	}()
	return nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// readiness says why the node is not ready to serve, or nil: it is open, and
// in a cluster it has caught up with the cluster state and every partition
// it hosts has a leader.
func (b *Broker) readiness() error {
	if !b.ready.Load() {
		return errors.New("starting or stopping")
	}
	if err := b.store.Err(); err != nil {
		return fmt.Errorf("node %d takes no more writes: %w; free disk space if the disk is full, then restart the node (the records it acknowledged are kept)", b.opts.NodeID, err)
	}
	if b.cluster == nil {
		return nil
	}
	if err := b.cluster.ready(); err != nil {
		return err
	}
	if nodes, _ := b.topics.nodes(); !slices.ContainsFunc(nodes, func(n nodeMeta) bool { return n.ID == b.opts.NodeID }) {
		return fmt.Errorf("node %d is not registered with the controller yet", b.opts.NodeID)
	}
	return b.cluster.catalog.leadersKnown()
}
