package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/client/pipeline"
)

// The topics of one run are named wc-<run>-lines, -counts and -totals, so
// that runs against one cluster do not mix.
//
// Records:
//   - lines: a line of the file as the value; after the last line of each
//     partition, an end-of-input marker (header eofHeader, no value).
//   - counts: key a word, value its count in one line, as decimal; and for
//     each line partition p whose marker a mapper read, a marker in every
//     counts partition with header eofHeader = p.
//   - totals: key a word, value its total; after a reducer's last total, a
//     marker with header eofHeader = the reducer's counts partition.
const eofHeader = "wordcount-eof"

type config struct {
	input    string
	brokers  string
	splits   int // S
	reducers int // R
	mappers  int
	out      io.Writer
	// mapHook, when set, is called by the mappers before each line (tests).
	mapHook func(ctx context.Context, in *client.Record) error
}

// run counts the words of cfg.input and prints the totals.
func run(ctx context.Context, cfg config) error {
	if cfg.splits < 1 || cfg.reducers < 1 || cfg.mappers < 1 {
		return errors.New("-splits, -reducers and -mappers must be at least 1")
	}
	newClient, closeBroker, err := connect(ctx, cfg.brokers)
	if err != nil {
		return err
	}
	defer closeBroker()
	c, err := newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	// Mappers and the loader pick partitions themselves.
	manual, err := newClient(client.RecordPartitioner(client.ManualPartitioner()))
	if err != nil {
		return err
	}
	defer manual.Close()

	prefix := fmt.Sprintf("wc-%d-", time.Now().UnixNano())
	lines, counts, totals := prefix+"lines", prefix+"counts", prefix+"totals"
	for _, t := range []struct {
		name string
		n    int
	}{{lines, cfg.splits}, {counts, cfg.reducers}, {totals, 1}} {
		if _, err := c.CreateTopic(ctx, t.name, t.n, 0, nil); err != nil {
			return fmt.Errorf("create topic %s: %w", t.name, err)
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, cfg.mappers+cfg.reducers+1)
	for range cfg.mappers {
		wg.Go(func() { errs <- restarting(ctx, func() error { return mapper(ctx, c, manual, lines, counts, cfg) }) })
	}
	for r := range cfg.reducers {
		wg.Go(func() { errs <- reducer(ctx, c, counts, int32(r), totals, cfg.splits) })
	}
	wg.Go(func() { errs <- load(ctx, manual, cfg.input, lines, cfg.splits) })

	words, err := collect(ctx, c, totals, cfg.reducers, errs)
	cancel()
	wg.Wait()
	if err != nil {
		return err
	}
	slices.SortFunc(words, func(a, b wordCount) int { return strings.Compare(a.word, b.word) })
	w := bufio.NewWriter(cfg.out)
	for _, wc := range words {
		fmt.Fprintf(w, "%s\t%d\n", wc.word, wc.n)
	}
	return w.Flush()
}

// load produces the lines of file to topic, line i to partition i mod
// splits, then an end-of-input marker to every partition.
func load(ctx context.Context, c *client.Client, file, topic string, splits int) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 512*1024)
	var (
		mu     sync.Mutex
		failed error
	)
	promise := func(_ *client.Record, err error) {
		if err != nil {
			mu.Lock()
			failed = cmpOr(failed, err)
			mu.Unlock()
		}
	}
	for i := 0; sc.Scan(); i++ {
		c.Produce(ctx, &client.Record{Topic: topic, Partition: int32(i % splits), Value: slices.Clone(sc.Bytes())}, promise)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	if err := c.Flush(ctx); err != nil {
		return err
	}
	mu.Lock()
	err = failed
	mu.Unlock()
	if err != nil {
		return fmt.Errorf("produce lines: %w", err)
	}
	var eofs []*client.Record
	for p := range splits {
		eofs = append(eofs, &client.Record{Topic: topic, Partition: int32(p), Headers: []client.Header{{Key: eofHeader, Value: []byte(strconv.Itoa(p))}}})
	}
	if err := c.ProduceSync(ctx, eofs...); err != nil {
		return fmt.Errorf("produce end-of-input markers: %w", err)
	}
	return nil
}

// maxRestarts is how many times a failed mapper is started again.
const maxRestarts = 3

// restarting runs f until it returns nil or ctx ends, starting it again
// after a failure, at most maxRestarts times. A mapper started again
// joins the map stage's group again, and the lines since the group's last
// commit are mapped again.
func restarting(ctx context.Context, f func() error) error {
	var err error
	for range maxRestarts + 1 {
		if err = f(); err == nil || ctx.Err() != nil {
			return nil
		}
	}
	return err
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// mapper is one member of the map stage: for each line it emits, per
// distinct word, the word's count in the line to the counts partition of
// the word; for an end-of-input marker of line partition p, a marker for p
// to every counts partition. It runs until ctx ends.
func mapper(ctx context.Context, c, out *client.Client, lines, counts string, cfg config) error {
	mapLine := func(ctx context.Context, in *client.Record) ([]*client.Record, error) {
		if cfg.mapHook != nil {
			if err := cfg.mapHook(ctx, in); err != nil {
				return nil, err
			}
		}
		if p, ok := header(in, eofHeader); ok {
			outs := make([]*client.Record, cfg.reducers)
			for r := range outs {
				outs[r] = &client.Record{Topic: counts, Partition: int32(r), Headers: []client.Header{{Key: eofHeader, Value: []byte(p)}}}
			}
			return outs, nil
		}
		n := map[string]int{}
		var order []string
		for _, w := range strings.Fields(string(in.Value)) {
			if n[w] == 0 {
				order = append(order, w)
			}
			n[w]++
		}
		outs := make([]*client.Record, 0, len(order))
		for _, w := range order {
			outs = append(outs, &client.Record{Topic: counts, Partition: int32(client.KeyPartition([]byte(w), cfg.reducers)),
				Key: []byte(w), Value: []byte(strconv.Itoa(n[w]))})
		}
		return outs, nil
	}
	return pipeline.Run(ctx, c, lines+"-mappers", []string{lines}, mapLine, pipeline.Producer(out))
}

// reducer sums the counts of one counts partition, read from its start.
// A count is taken once per message id, so counts a mapper produced again
// after a restart are not added twice. Once it has the marker of every
// line partition, it emits its totals and its own marker.
func reducer(ctx context.Context, c *client.Client, counts string, part int32, totals string, splits int) error {
	sums := map[string]int{}
	seen := map[string]bool{} // message ids taken
	eofs := map[string]bool{} // line partitions whose input has ended
	for r, err := range c.Consume(ctx, counts, part, client.Start()) {
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("reducer %d: %w", part, err)
		}
		if p, ok := header(r, eofHeader); ok {
			eofs[p] = true
			if len(eofs) < splits {
				continue
			}
			break
		}
		id, _ := header(r, pipeline.MsgIDHeader)
		if seen[id] {
			continue
		}
		seen[id] = true
		n, err := strconv.Atoi(string(r.Value))
		if err != nil {
			return fmt.Errorf("reducer %d: count of %q at offset %d: %w", part, r.Key, r.Offset, err)
		}
		sums[string(r.Key)] += n
	}
	if ctx.Err() != nil {
		return nil
	}
	out := make([]*client.Record, 0, len(sums)+1)
	for w, n := range sums {
		out = append(out, &client.Record{Topic: totals, Key: []byte(w), Value: []byte(strconv.Itoa(n))})
	}
	out = append(out, &client.Record{Topic: totals, Headers: []client.Header{{Key: eofHeader, Value: []byte(strconv.Itoa(int(part)))}}})
	if err := c.ProduceSync(ctx, out...); err != nil {
		return fmt.Errorf("reducer %d: produce totals: %w", part, err)
	}
	return nil
}

type wordCount struct {
	word string
	n    int
}

// collect reads the totals until it has the marker of every reducer, or a
// stage fails.
func collect(ctx context.Context, c *client.Client, totals string, reducers int, errs <-chan error) ([]wordCount, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	failed := make(chan error, 1)
	go func() {
		for {
			select {
			case err := <-errs:
				if err != nil {
					failed <- err
					cancel()
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	var words []wordCount
	done := map[string]bool{}
	var readErr error
	for r, err := range c.Consume(ctx, totals, 0, client.Start()) {
		if err != nil {
			readErr = err
			break
		}
		if p, ok := header(r, eofHeader); ok {
			if done[p] = true; len(done) == reducers {
				return words, nil
			}
			continue
		}
		n, err := strconv.Atoi(string(r.Value))
		if err != nil {
			return nil, fmt.Errorf("total of %q: %w", r.Key, err)
		}
		words = append(words, wordCount{string(r.Key), n})
	}
	select {
	case err := <-failed:
		return nil, err
	default:
	}
	if readErr != nil {
		return nil, fmt.Errorf("read totals: %w", readErr)
	}
	return nil, ctx.Err()
}

func header(r *client.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}
