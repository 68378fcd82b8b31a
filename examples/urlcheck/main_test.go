package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
)

// testServer serves fast, slow, failing (500), hanging and flaky URLs: a
// flaky path drops the connection on its first request and answers 200
// after.
func testServer(t *testing.T) *httptest.Server {
	var mu sync.Mutex
	tried := map[string]bool{}
	mux := http.NewServeMux()
	mux.HandleFunc("/fast", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(30 * time.Millisecond):
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	mux.HandleFunc("/flaky/", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		first := !tried[r.URL.Path]
		tried[r.URL.Path] = true
		mu.Unlock()
		if first {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// closedURL returns a URL nothing listens on.
func closedURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/"
}

// TestURLCheck publishes a file of URLs with duplicates, runs three
// checkers and a writer, stops one checker right after it has published
// a result but before settling its input (and another one plainly) and
// starts new ones, and checks that the results file has exactly one
// result per line, the right one for its URL.
func TestURLCheck(t *testing.T) {
	srv := testServer(t)
	down := closedURL(t)
	kinds := map[string]string{ // URL → expected outcome
		srv.URL + "/fast": "200", srv.URL + "/slow": "200", srv.URL + "/fail": "500",
		srv.URL + "/hang": "error", down: "error",
	}
	for i := range 20 {
		kinds[fmt.Sprintf("%s/flaky/%d", srv.URL, i)] = "200"
	}
	var urls []string
	for u := range kinds {
		urls = append(urls, u)
	}
	r := rand.New(rand.NewPCG(1, 2))
	var text strings.Builder
	const lines = 600
	for i := range lines {
		u := urls[r.IntN(len(urls))]
		if i%3 == 0 {
			u = srv.URL + "/fast" // plenty of duplicates
		}
		fmt.Fprintln(&text, u)
	}
	dir := t.TempDir()
	cfg := defaults()
	cfg.input, cfg.out = filepath.Join(dir, "urls.txt"), filepath.Join(dir, "results.jsonl")
	// A short lease, so that the leases of the stopped checkers that were
	// not given back expire soon; a fetch takes at most 200ms.
	cfg.timeout, cfg.backoffMin, cfg.backoffMax, cfg.visibility = 200*time.Millisecond, 10*time.Millisecond, 50*time.Millisecond, 2*time.Second
	if err := os.WriteFile(cfg.input, []byte(text.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	b, err := broker.Open(filepath.Join(dir, "broker"), broker.Options{NoSync: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c, err := client.New(ctx, client.Brokers(b.Addr()), client.Dialer(b.DialContext))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := ensureTopics(ctx, c); err != nil {
		t.Fatal(err)
	}

	var checkers sync.WaitGroup
	startChecker := func(cfg config) context.CancelFunc {
		ctx, stop := context.WithCancel(ctx)
		checkers.Go(func() {
			if err := check(ctx, c, cfg); err != nil {
				t.Errorf("checker: %v", err)
			}
		})
		return stop
	}
	// Checker 1 stops right after publishing its 100th result, before it
	// acks the input: another checker checks that line again.
	var (
		once      sync.Once
		published int
		crashed   = make(chan struct{})
		stop1     context.CancelFunc
		mu        sync.Mutex
	)
	crashing := cfg
	crashing.published = func(string) {
		mu.Lock()
		defer mu.Unlock()
		if published++; published == 100 {
			once.Do(func() { stop1(); close(crashed) })
		}
	}
	mu.Lock()
	stop1 = startChecker(crashing)
	mu.Unlock()
	stop2 := startChecker(cfg)
	stop3 := startChecker(cfg)

	halfway := make(chan struct{})
	var half sync.Once
	type writeResult struct {
		n   int
		err error
	}
	wrote := make(chan writeResult, 1)
	go func() {
		n, err := write(ctx, c, cfg, lines, func(n int) {
			if n == lines/2 {
				half.Do(func() { close(halfway) })
			}
		})
		wrote <- writeResult{n, err}
	}()
	if n, err := publish(ctx, c, cfg); err != nil || n != lines {
		t.Fatalf("publish = %d, %v; want %d lines", n, err, lines)
	}

	<-crashed
	stop4 := startChecker(cfg) // in place of checker 1
	select {
	case <-halfway:
	case <-ctx.Done():
		t.Fatal("the writer did not get halfway")
	}
	stop2() // a plain stop in the middle, and a new checker
	stop5 := startChecker(cfg)

	w := <-wrote
	for _, stop := range []context.CancelFunc{stop3, stop4, stop5} {
		stop()
	}
	checkers.Wait()
	if w.err != nil || w.n != lines {
		t.Fatalf("write = %d, %v; want %d", w.n, w.err, lines)
	}

	f, err := os.Open(cfg.out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want, err := readLines(cfg.input)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]Result{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var res Result
		if err := json.Unmarshal(sc.Bytes(), &res); err != nil {
			t.Fatalf("results line %q: %v", sc.Text(), err)
		}
		if _, dup := got[res.Line]; dup {
			t.Errorf("line %d has two results", res.Line)
		}
		got[res.Line] = res
	}
	if len(got) != len(want) {
		t.Errorf("%d results for %d lines", len(got), len(want))
	}
	for _, e := range want {
		res, ok := got[e.line]
		switch {
		case !ok:
			t.Errorf("line %d (%s): no result", e.line, e.url)
		case res.URL != e.url || res.ID != lineID(cfg.run, e.line):
			t.Errorf("line %d (%s): result %+v", e.line, e.url, res)
		case kinds[e.url] == "error":
			// A delivery a stopped checker gave back counts too.
			if res.Error == "" || res.Attempts < cfg.attempts {
				t.Errorf("line %d (%s): want an error after at least %d deliveries, got %+v", e.line, e.url, cfg.attempts, res)
			}
		default:
			if fmt.Sprint(res.Status) != kinds[e.url] || res.DurationMS == nil {
				t.Errorf("line %d (%s): want status %s, got %+v", e.line, e.url, kinds[e.url], res)
			}
		}
	}
}
