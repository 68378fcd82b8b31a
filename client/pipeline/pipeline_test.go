package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/client/pipeline"
)

// until wraps f to call stop once it has processed n inputs.
func until(f pipeline.Func, n int, stop func()) pipeline.Func {
	var seen int
	return func(ctx context.Context, in *client.Record) ([]*client.Record, error) {
		outs, err := f(ctx, in)
		if seen++; seen == n {
			stop()
		}
		return outs, err
	}
}

// runStage runs a stage until it has processed n inputs and returns once
// Run has committed and returned.
func runStage(t *testing.T, c *client.Client, group string, inputs []string, f pipeline.Func, n int, opts ...pipeline.Option) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := pipeline.Run(ctx, c, group, inputs, until(f, n, cancel), opts...); err != nil {
		t.Fatalf("run %s: %v", group, err)
	}
	if errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		t.Fatalf("run %s: timed out", group)
	}
}

func values(recs []*client.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Value))
	}
	slices.Sort(out)
	return out
}

func TestPatterns(t *testing.T) {
	e := startBroker(t, false)
	c := e.client()
	ctx := t.Context()
	e.createTopics(ctx, c, 2, "users", "copy-a", "copy-b", "kept", "eu", "us", "other", "shard-0", "shard-1", "shard-2", "merged")
	regions := []string{"eu", "us", "ap"}
	var in []*client.Record
	var all, even []string
	for i := range 30 {
		v := fmt.Sprintf("user-%02d", i)
		in = append(in, &client.Record{Topic: "users", Key: []byte(regions[i%3]), Value: []byte(v)})
		all = append(all, v)
		if i%2 == 0 {
			even = append(even, v)
		}
	}
	if err := c.ProduceSync(ctx, in...); err != nil {
		t.Fatal(err)
	}

	runStage(t, c, "copier", []string{"users"}, pipeline.Copy("copy-a", "copy-b"), 30)
	runStage(t, c, "filter", []string{"users"}, pipeline.Filter("kept", func(r *client.Record) bool {
		n, _ := strconv.Atoi(string(r.Value[len("user-"):]))
		return n%2 == 0
	}), 30)
	runStage(t, c, "splitter", []string{"users"}, pipeline.Split(
		pipeline.Route{To: "eu", Match: func(r *client.Record) bool { return string(r.Key) == "eu" }},
		pipeline.Route{To: "us", Match: func(r *client.Record) bool { return string(r.Key) == "us" }},
		pipeline.Route{To: "other"},
	), 30)
	runStage(t, c, "sharder", []string{"users"}, pipeline.Shard(nil, "shard-0", "shard-1", "shard-2"), 30)
	runStage(t, c, "merger", []string{"copy-a", "copy-b"}, pipeline.Merge("merged"), 60)

	for _, topic := range []string{"copy-a", "copy-b"} {
		if diff := cmp.Diff(all, values(readAll(t, ctx, c, topic))); diff != "" {
			t.Errorf("%s (-want +got):\n%s", topic, diff)
		}
	}
	if diff := cmp.Diff(even, values(readAll(t, ctx, c, "kept"))); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
	// Split: every record in exactly one output, by its key.
	var split []string
	for _, topic := range []string{"eu", "us", "other"} {
		for _, r := range readAll(t, ctx, c, topic) {
			want := topic
			if string(r.Key) == "ap" {
				want = "other"
			}
			if topic != want {
				t.Errorf("%s with key %s went to %s", r.Value, r.Key, topic)
			}
			split = append(split, string(r.Value))
		}
	}
	slices.Sort(split)
	if diff := cmp.Diff(all, split); diff != "" {
		t.Errorf("split outputs (-want +got):\n%s", diff)
	}
	// Shard: each key in one shard only, every record once.
	var sharded []string
	shardOf := map[string]string{}
	for i := range 3 {
		topic := "shard-" + strconv.Itoa(i)
		for _, r := range readAll(t, ctx, c, topic) {
			if prev, ok := shardOf[string(r.Key)]; ok && prev != topic {
				t.Errorf("key %s in %s and %s", r.Key, prev, topic)
			}
			shardOf[string(r.Key)] = topic
			sharded = append(sharded, string(r.Value))
		}
	}
	slices.Sort(sharded)
	if diff := cmp.Diff(all, sharded); diff != "" {
		t.Errorf("shard outputs (-want +got):\n%s", diff)
	}
	var twice []string
	for _, v := range all {
		twice = append(twice, v, v)
	}
	if diff := cmp.Diff(twice, values(readAll(t, ctx, c, "merged"))); diff != "" {
		t.Errorf("merged (-want +got):\n%s", diff)
	}
}

// TestSplitUnroutable checks that a record no route matches stops the
// stage with ErrUnroutable and is not committed past.
func TestSplitUnroutable(t *testing.T) {
	e := startBroker(t, false)
	c := e.client()
	ctx := t.Context()
	e.createTopics(ctx, c, 1, "in", "eu")
	recs := []*client.Record{
		{Topic: "in", Key: []byte("eu"), Value: []byte("a")},
		{Topic: "in", Key: []byte("mars"), Value: []byte("b")},
		{Topic: "in", Key: []byte("eu"), Value: []byte("c")},
	}
	if err := c.ProduceSync(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	err := pipeline.Run(ctx, c, "split", []string{"in"}, pipeline.Split(
		pipeline.Route{To: "eu", Match: func(r *client.Record) bool { return string(r.Key) == "eu" }},
	), pipeline.CommitRecords(1))
	if !errors.Is(err, pipeline.ErrUnroutable) {
		t.Fatalf("Run = %v, want ErrUnroutable", err)
	}
	offs, err := c.CommittedOffsets(ctx, "split")
	if err != nil {
		t.Fatal(err)
	}
	if got := offs[client.TopicPartition{Topic: "in", Partition: 0}]; got > 1 {
		t.Errorf("committed offset %d, want at most 1 (the unroutable record's)", got)
	}
}

// TestRestart stops a stage in the middle without committing, as a crash
// would, and runs it again: every input has its output, and none has two,
// since a partition deduplicates by message id on a single node as on a
// cluster.
func TestRestart(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		t.Run(map[bool]string{false: "single-node", true: "cluster"}[cluster], func(t *testing.T) {
			testRestart(t, cluster)
		})
	}
}

func testRestart(t *testing.T, cluster bool) {
	const n, crashAt, every = 200, 130, 50
	e := startBroker(t, cluster)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	c := e.client()
	e.createTopics(ctx, c, 1, "in", "out")
	var in []*client.Record
	for i := range n {
		in = append(in, &client.Record{Topic: "in", Value: []byte(fmt.Sprintf("r%03d", i))})
	}
	if err := c.ProduceSync(ctx, in...); err != nil {
		t.Fatal(err)
	}
	upper := func(_ context.Context, r *client.Record) ([]*client.Record, error) {
		return []*client.Record{{Topic: "out", Value: []byte("OUT-" + string(r.Value))}}, nil
	}

	// The first run fails at input crashAt: the inputs since its last
	// commit (every 50) are not committed, but their outputs were sent.
	errCrash := errors.New("crash")
	var seen int
	crashing := func(ctx context.Context, r *client.Record) ([]*client.Record, error) {
		if seen++; seen > crashAt {
			return nil, errCrash
		}
		return upper(ctx, r)
	}
	p1 := e.client()
	if err := pipeline.Run(ctx, e.client(), "stage", []string{"in"}, crashing, pipeline.Producer(p1), pipeline.Unbatched(), pipeline.CommitRecords(every)); !errors.Is(err, errCrash) {
		t.Fatalf("first run = %v, want the crash", err)
	}
	if err := p1.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	offs, err := c.CommittedOffsets(ctx, "stage")
	if err != nil {
		t.Fatal(err)
	}
	committed := offs[client.TopicPartition{Topic: "in", Partition: 0}]
	if committed >= crashAt {
		t.Fatalf("committed %d before the crash at %d: nothing to replay", committed, crashAt)
	}

	// The second run reads from the last commit to the end.
	runStage(t, e.client(), "stage", []string{"in"}, upper, n-int(committed), pipeline.Producer(e.client()), pipeline.Unbatched())

	counts := map[string]int{}
	ids := map[string]map[string]bool{}
	for _, r := range readAll(t, ctx, c, "out") {
		v := string(r.Value)
		counts[v]++
		if ids[v] == nil {
			ids[v] = map[string]bool{}
		}
		for _, h := range r.Headers {
			if h.Key == pipeline.MsgIDHeader {
				ids[v][string(h.Value)] = true
			}
		}
	}
	var dups int
	for i := range n {
		v := fmt.Sprintf("OUT-r%03d", i)
		switch {
		case counts[v] == 0:
			t.Errorf("%s lost", v)
		case len(ids[v]) != 1:
			t.Errorf("%s has message ids %v, want one", v, ids[v])
		case counts[v] > 1:
			dups++
			if int64(i) < committed || i >= crashAt {
				t.Errorf("%s written %d times, though not replayed", v, counts[v])
			}
		}
	}
	if dups > 0 {
		t.Errorf("%d outputs written twice, want 0", dups)
	}
}

// A stage stopped while f handles an input does not commit that input,
// though the inputs before it are uncommitted too (no commit is due yet):
// the next run gets it again.
func TestStopInsideFunc(t *testing.T) {
	e := startBroker(t, false)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	c := e.client()
	e.createTopics(ctx, c, 1, "in", "out")
	for i := range 5 {
		if err := c.ProduceSync(ctx, &client.Record{Topic: "in", Value: []byte(fmt.Sprint("r", i))}); err != nil {
			t.Fatal(err)
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	f := func(ctx context.Context, r *client.Record) ([]*client.Record, error) {
		if r.Offset == 2 {
			// Stopped while working on offset 2, before any output.
			stop()
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return []*client.Record{{Topic: "out", Value: r.Value}}, nil
	}
	if err := pipeline.Run(runCtx, c, "stage", []string{"in"}, f); err != nil {
		t.Fatalf("run: %v", err)
	}
	offs, err := c.CommittedOffsets(ctx, "stage")
	if err != nil {
		t.Fatal(err)
	}
	if got := offs[client.TopicPartition{Topic: "in", Partition: 0}]; got > 2 {
		t.Fatalf("committed %d after stopping inside offset 2's function; want at most 2", got)
	}
}
