package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/runnel-dev/runnel/client"
)

// The topics, the groups and the headers.
const (
	pingTopic    = "ping"
	resultsTopic = "ping-results"
	checkGroup   = "ping-checkers" // the checkers' queue group
	writeGroup   = "ping-writer"   // the writer's consumer group
	lineHeader   = "urlcheck-line" // the line number of an input
)

type config struct {
	role, input, out, brokers, run string
	checkers, concurrency          int
	timeout                        time.Duration
	attempts                       int
	backoffMin, backoffMax         time.Duration
	visibility                     time.Duration
	// published, when set, is called after a result is published and
	// before its input is settled (tests).
	published func(id string)
}

// Result is one line of the results file, and the value of a record of
// ping-results: Status and DurationMS when the URL answered (any HTTP
// status), Error when every attempt failed.
type Result struct {
	ID         string `json:"id"`
	Line       int    `json:"line"`
	URL        string `json:"url"`
	Status     int    `json:"status,omitempty"`
	DurationMS *int64 `json:"duration_ms,omitempty"`
	Error      string `json:"error,omitempty"`
	Attempts   int    `json:"attempts"`
}

// entry is one URL of the input file.
type entry struct {
	line int // 1-based line number in the file
	url  string
}

// readLines returns the URLs of file, skipping blank lines and lines
// starting with #.
func readLines(file string) ([]entry, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []entry
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		out = append(out, entry{n, s})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	return out, nil
}

func ensureTopics(ctx context.Context, c *client.Client) error {
	for _, t := range []struct {
		name string
		n    int
	}{{pingTopic, 4}, {resultsTopic, 2}} {
		if _, err := c.EnsureTopic(ctx, t.name, t.n, 0); err != nil {
			return fmt.Errorf("create topic %s: %w", t.name, err)
		}
	}
	return nil
}

// lineID is the message id of input line n: RUN/n.
func lineID(run string, n int) string { return run + "/" + strconv.Itoa(n) }

// resultID is the message id of the result of the input with id id.
func resultID(id string) string { return "result/" + id }

// publish produces every URL of cfg.input to ping, each with its message
// id, and returns how many.
func publish(ctx context.Context, c *client.Client, cfg config) (int, error) {
	lines, err := readLines(cfg.input)
	if err != nil {
		return 0, err
	}
	recs := make([]*client.Record, len(lines))
	for i, e := range lines {
		recs[i] = &client.Record{Topic: pingTopic, Value: []byte(e.url), Headers: []client.Header{
			{Key: client.MsgIDHeader, Value: []byte(lineID(cfg.run, e.line))},
			{Key: lineHeader, Value: []byte(strconv.Itoa(e.line))},
		}}
	}
	if err := c.ProduceSync(ctx, recs...); err != nil {
		return 0, fmt.Errorf("publish: %w", err)
	}
	return len(recs), nil
}

// checkMany runs cfg.checkers checkers until ctx ends.
func checkMany(ctx context.Context, c *client.Client, cfg config) error {
	var wg sync.WaitGroup
	errs := make([]error, cfg.checkers)
	for i := range cfg.checkers {
		wg.Go(func() { errs[i] = check(ctx, c, cfg) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// check is one checker: a member of the queue group with cfg.concurrency
// handlers. It runs until ctx ends; the deliveries it has not settled then
// go back to the group.
func check(ctx context.Context, c *client.Client, cfg config) error {
	q, err := c.Queue(checkGroup, pingTopic, client.QueueOptions{Visibility: cfg.visibility})
	if err != nil {
		return fmt.Errorf("join %s: %w", checkGroup, err)
	}
	defer q.Close()
	hc := &http.Client{Timeout: cfg.timeout}
	var wg sync.WaitGroup
	errs := make([]error, cfg.concurrency)
	for i := range cfg.concurrency {
		wg.Go(func() {
			for {
				d, err := q.Next(ctx)
				if err != nil {
					if ctx.Err() == nil {
						errs[i] = err
					}
					return
				}
				if err := handle(ctx, c, q, hc, cfg, d); err != nil && ctx.Err() == nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// handle checks the URL of d. A URL that answers, with any status, is a
// result; one that fails is nacked with backoff, and on its last attempt
// its error is the result and it is dead-lettered. The result is acked
// only after it is published, so a checker that stops in between leaves
// the line to another, whose result has the same message id.
func handle(ctx context.Context, c *client.Client, q *client.Queue, hc *http.Client, cfg config, d *client.Delivery) error {
	id := header(&d.Record, client.MsgIDHeader)
	line, _ := strconv.Atoi(header(&d.Record, lineHeader))
	res := Result{ID: id, Line: line, URL: string(d.Value), Attempts: d.Attempt}
	start := time.Now()
	status, ferr := fetch(ctx, hc, res.URL)
	if ctx.Err() != nil {
		return nil // stopping: the lease goes back to the group
	}
	if ferr != nil && d.Attempt < cfg.attempts {
		if err := q.Nack(ctx, d, backoff(cfg, d.Attempt)); err != nil && !errors.Is(err, client.ErrLeaseLost) {
			return fmt.Errorf("nack %s: %w", id, err)
		}
		return nil
	}
	if ferr != nil {
		res.Error = ferr.Error()
	} else {
		ms := time.Since(start).Milliseconds()
		res.Status, res.DurationMS = status, &ms
	}
	value, _ := json.Marshal(res)
	out := &client.Record{Topic: resultsTopic, Key: []byte(id), Value: value,
		Headers: []client.Header{{Key: client.MsgIDHeader, Value: []byte(resultID(id))}}}
	if err := c.ProduceSync(ctx, out); err != nil {
		return fmt.Errorf("publish result of %s: %w", id, err)
	}
	if cfg.published != nil {
		cfg.published(id)
	}
	var err error
	if ferr != nil {
		err = q.Reject(ctx, d, client.DeadLetter{Reason: fmt.Sprintf("%d attempts failed, the last: %s", d.Attempt, res.Error)})
	} else {
		err = q.Ack(ctx, d)
	}
	if err != nil && !errors.Is(err, client.ErrLeaseLost) {
		return fmt.Errorf("settle %s: %w", id, err)
	}
	return nil
}

// fetch gets url and returns its status; the body is read and dropped.
func fetch(ctx context.Context, hc *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)); err != nil {
		return 0, fmt.Errorf("read body: %w", err)
	}
	return resp.StatusCode, nil
}

// backoff is the delay before attempt+1: backoffMin doubled per attempt,
// at most backoffMax, less up to half of it at random.
func backoff(cfg config, attempt int) time.Duration {
	d := cfg.backoffMin << min(attempt-1, 20)
	if d <= 0 || d > cfg.backoffMax {
		d = cfg.backoffMax
	}
	return d - rand.N(d/2+1)
}

// write appends each result of ping-results to cfg.out, once per message
// id (ids already in the file count as written), until it holds want
// results of the run (want < 0: until ctx ends). It calls written, when not
// nil, with the count after each line. It returns the count.
func write(ctx context.Context, c *client.Client, cfg config, want int, written func(int)) (int, error) {
	f, err := os.OpenFile(cfg.out, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		var r Result
		if json.Unmarshal(sc.Bytes(), &r) == nil && strings.HasPrefix(r.ID, cfg.run+"/") {
			seen[r.ID] = true
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read %s: %w", cfg.out, err)
	}
	if want >= 0 && len(seen) >= want {
		return len(seen), nil
	}
	g, err := c.JoinGroup(ctx, writeGroup, []string{resultsTopic})
	if err != nil {
		return len(seen), fmt.Errorf("join %s: %w", writeGroup, err)
	}
	defer g.Close(context.WithoutCancel(ctx))
	for r, err := range g.Records(ctx) {
		if err != nil {
			return len(seen), err
		}
		var res Result
		if err := json.Unmarshal(r.Value, &res); err != nil || !strings.HasPrefix(res.ID, cfg.run+"/") || seen[res.ID] {
			continue // not this run's, or written already
		}
		// One write per line, so a line is never half there.
		if _, err := f.Write(append(r.Value, '\n')); err != nil {
			return len(seen), fmt.Errorf("append to %s: %w", cfg.out, err)
		}
		seen[res.ID] = true
		if written != nil {
			written(len(seen))
		}
		if want >= 0 && len(seen) >= want {
			break
		}
	}
	if err := f.Sync(); err != nil {
		return len(seen), err
	}
	return len(seen), ctx.Err()
}

// runAll runs the publisher, cfg.checkers checkers and the writer, and
// returns once the writer has a result for every line.
func runAll(ctx context.Context, newClient func() (*client.Client, error), cfg config) error {
	lines, err := readLines(cfg.input)
	if err != nil {
		return err
	}
	c, err := newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	if err := ensureTopics(ctx, c); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	checked := make(chan error, 1)
	go func() { checked <- checkMany(ctx, c, cfg) }()
	type writeResult struct {
		n   int
		err error
	}
	wrote := make(chan writeResult, 1)
	go func() {
		n, err := write(ctx, c, cfg, len(lines), nil)
		wrote <- writeResult{n, err}
	}()
	if _, err := publish(ctx, c, cfg); err != nil {
		cancel()
		<-checked
		<-wrote
		return err
	}
	var w writeResult
	var checkErr error
	select {
	case w = <-wrote:
		cancel()
		checkErr = <-checked
	case checkErr = <-checked: // the checkers failed (or ctx ended)
		cancel()
		w = <-wrote
	}
	fmt.Fprintf(os.Stderr, "urlcheck: %d results for %d lines in %s\n", w.n, len(lines), cfg.out)
	if w.err != nil && w.n < len(lines) {
		return errors.Join(w.err, checkErr)
	}
	return checkErr
}

// header returns the value of r's header key, or "".
func header(r *client.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
