package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildRunnel builds the binary once per test binary run.
func buildRunnel(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "runnel")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/runnel-dev/runnel/cmd/runnel").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// server is a `runnel serve` process.
type server struct {
	cmd  *exec.Cmd
	addr string
	logs *bytes.Buffer
}

var startedRE = regexp.MustCompile(`msg="broker started".* addr=(\S+)`)

// startServer runs `runnel serve` on data and waits until it logs its address.
func startServer(t *testing.T, bin, data string, extra ...string) *server {
	t.Helper()
	args := append([]string{"serve", "--data", data, "--addr", "127.0.0.1:0"}, extra...)
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, logs: &bytes.Buffer{}}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			s.logs.WriteString(line + "\n")
			if m := startedRE.FindStringSubmatch(line); m != nil {
				found <- m[1]
			}
		}
		close(found)
	}()
	select {
	case addr, ok := <-found:
		if !ok {
			t.Fatalf("runnel serve exited before it started:\n%s", s.logs)
		}
		s.addr = addr
	case <-time.After(30 * time.Second):
		t.Fatalf("runnel serve did not start within 30s")
	}
	return s
}

// run runs a client command against addr and returns stdout and stderr.
func run(t *testing.T, bin, addr string, stdin io.Reader, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(args, "--brokers", addr)...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// mustRun is run for commands that must succeed; it returns stdout.
func mustRun(t *testing.T, bin, addr string, stdin io.Reader, args ...string) string {
	t.Helper()
	out, stderr, err := run(t, bin, addr, stdin, args...)
	if err != nil {
		t.Fatalf("runnel %s: %v: %s", strings.Join(args, " "), err, stderr)
	}
	return out
}

type jsonRecord struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Key       string `json:"key"`
	Value     string `json:"value"`
}

// TestKillNineKeepsAcknowledgedRecords pipes 100,000 keyed lines into
// `runnel produce`, kills the broker with SIGKILL the moment the producer
// exits 0, restarts it on the same data and reads everything back.
func TestKillNineKeepsAcknowledgedRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildRunnel(t)
	data := t.TempDir()
	srv := startServer(t, bin, data)

	mustRun(t, bin, srv.addr, nil, "topic", "create", "t", "-p", "3")
	const n = 100_000
	const keys = 50
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, "k%d:%d\n", i%keys, i)
	}
	mustRun(t, bin, srv.addr, strings.NewReader(in.String()), "produce", "t", "--key-sep", ":")
	if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	srv.cmd.Wait()

	srv = startServer(t, bin, data)
	out := mustRun(t, bin, srv.addr, nil, "consume", "t", "--from", "start", "--until-end", "--format", "json")
	seen := make([]bool, n)
	nextOffset := map[int32]int64{}
	lastPerKey := map[string]int{}
	count := 0
	for line := range strings.Lines(out) {
		var r jsonRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("bad json line %q: %v", line, err)
		}
		var v int
		if _, err := fmt.Sscan(r.Value, &v); err != nil || v < 0 || v >= n {
			t.Fatalf("unexpected value %q", r.Value)
		}
		if seen[v] {
			t.Fatalf("value %d twice", v)
		}
		seen[v] = true
		count++
		if r.Offset != nextOffset[r.Partition] {
			t.Fatalf("partition %d: offset %d, want %d (offsets must be dense from 0)", r.Partition, r.Offset, nextOffset[r.Partition])
		}
		nextOffset[r.Partition]++
		if want := fmt.Sprintf("k%d", v%keys); r.Key != want {
			t.Fatalf("value %d has key %q, want %q", v, r.Key, want)
		}
		if last, ok := lastPerKey[r.Key]; ok && last > v {
			t.Fatalf("key %s: %d read after %d; same-key records must keep produce order", r.Key, v, last)
		}
		lastPerKey[r.Key] = v
	}
	if count != n {
		t.Fatalf("read %d records after kill -9 and restart, want %d", count, n)
	}

	// --partition 1 --from 500 starts at offset 500.
	out = mustRun(t, bin, srv.addr, nil, "consume", "t", "--partition", "1", "--from", "500", "--num", "1", "--format", "json")
	var r jsonRecord
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Offset != 500 || r.Partition != 1 {
		t.Fatalf("--partition 1 --from 500 gave %q (%v)", out, err)
	}
}

// TestErrorsAreOneLine checks the error cases a new user meets first.
func TestErrorsAreOneLine(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildRunnel(t)
	srv := startServer(t, bin, t.TempDir())
	mustRun(t, bin, srv.addr, nil, "topic", "create", "t")
	big := strings.Repeat("x", 2<<20) + "\n"
	cases := []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"existing topic", "", []string{"topic", "create", "t"}, "already exists"},
		{"unknown topic", "", []string{"consume", "nope", "--until-end"}, "not found"},
		{"record too large", big, []string{"produce", "t"}, "max.message.bytes"},
		{"offset past the end", "", []string{"consume", "t", "--partition", "0", "--from", "99"}, "offset 99"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := run(t, bin, srv.addr, strings.NewReader(tc.stdin), tc.args...)
			if err == nil {
				t.Fatalf("exit 0, want failure; stderr: %s", stderr)
			}
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			last := lines[len(lines)-1]
			if !strings.Contains(last, tc.want) {
				t.Fatalf("stderr %q does not say %q", stderr, tc.want)
			}
		})
	}
}
