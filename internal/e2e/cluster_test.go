package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// devCluster is a `runnel dev` process and the cluster.json it wrote.
type devCluster struct {
	t       *testing.T
	bin     string
	dir     string
	brokers string
	nodes   []devNode
	// restarted are nodes this test started again; dev does not own them.
	restarted []*exec.Cmd
}

type devNode struct {
	ID   int      `json:"id"`
	Addr string   `json:"addr"`
	Data string   `json:"data"`
	Cmd  []string `json:"cmd"`
}

func startDev(t *testing.T, bin string) *devCluster {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(bin, "dev", "--nodes", "3", "--port", "0", "--data", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &devCluster{t: t, bin: bin, dir: dir}
	t.Cleanup(func() {
		// dev stops its own nodes; the ones restarted here are ours.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		cmd.Wait()
		for _, r := range d.restarted {
			r.Process.Kill()
			r.Wait()
		}
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "RUNNEL_BROKERS="); ok {
				line <- v
			}
		}
		close(line)
	}()
	select {
	case b, ok := <-line:
		if !ok {
			t.Fatalf("runnel dev exited before the cluster was ready; logs in %s", dir)
		}
		d.brokers = b
	case <-time.After(90 * time.Second):
		t.Fatalf("runnel dev not ready within 90s")
	}
	data, err := os.ReadFile(filepath.Join(dir, "cluster.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cj struct {
		Brokers string    `json:"brokers"`
		Nodes   []devNode `json:"nodes"`
	}
	if err := json.Unmarshal(data, &cj); err != nil {
		t.Fatal(err)
	}
	if cj.Brokers != d.brokers || len(cj.Nodes) != 3 {
		t.Fatalf("cluster.json %s does not match RUNNEL_BROKERS=%s", data, d.brokers)
	}
	d.nodes = cj.Nodes
	return d
}

func (d *devCluster) node(id int) devNode {
	for _, n := range d.nodes {
		if n.ID == id {
			return n
		}
	}
	d.t.Fatalf("no node %d", id)
	return devNode{}
}

// signal sends sig to node id (its pid from DATA/runnel.pid) and waits for
// the pid file to name a dead process.
func (d *devCluster) signal(id int, sig syscall.Signal) {
	d.t.Helper()
	raw, err := os.ReadFile(filepath.Join(d.node(id).Data, "runnel.pid"))
	if err != nil {
		d.t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err := syscall.Kill(pid, sig); err != nil {
		d.t.Fatalf("signal node %d (pid %d): %v", id, pid, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		// Reap it if it is our child; otherwise dev reaps it.
		for _, r := range d.restarted {
			if r.Process.Pid == pid {
				r.Wait()
			}
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("node %d (pid %d) still running 30s after %v", id, pid, sig)
		}
		time.Sleep(20 * time.Millisecond) // polling a process's exit
	}
}

// restart starts node id again with its argv from cluster.json.
func (d *devCluster) restart(id int) {
	d.t.Helper()
	argv := d.node(id).Cmd
	cmd := exec.Command(argv[0], argv[1:]...)
	logf, err := os.OpenFile(filepath.Join(d.dir, fmt.Sprintf("node%d.restart.log", id)), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		d.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.restarted = append(d.restarted, cmd)
}

type describeJSON struct {
	Partitions []struct {
		Partition int   `json:"partition"`
		Leader    int   `json:"leader"`
		Replicas  []int `json:"replicas"`
		End       int64 `json:"end_offset"`
	} `json:"partitions"`
}

func (d *devCluster) describe(brokers, topic string) (describeJSON, error) {
	var out describeJSON
	stdout, stderr, err := run(d.t, d.bin, brokers, nil, "topic", "describe", topic, "--format", "json")
	if err != nil {
		return out, fmt.Errorf("%v: %s", err, stderr)
	}
	return out, json.Unmarshal([]byte(stdout), &out)
}

func (d *devCluster) others(id int) string {
	var addrs []string
	for _, n := range d.nodes {
		if n.ID != id {
			addrs = append(addrs, n.Addr)
		}
	}
	return strings.Join(addrs, ",")
}

// TestClusterKillLeader feeds unique values line by line into `runnel
// produce` with acks=all while the leader of partition 0 is killed with
// SIGKILL and restarted, twice; then checks that the producer exited 0 and
// that every value is there exactly once, offsets dense, each partition in
// produce order. Then, with two of three nodes stopped, a produce fails
// with a no-leader error, and succeeds again once one node is back.
func TestClusterKillLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-node cluster of real processes")
	}
	if os.Getenv("RUNNEL_E2E_CLUSTER") == "" {
		t.Skip("set RUNNEL_E2E_CLUSTER=1 to run the kill-the-leader check (about 100 s)")
	}
	bin := buildRunnel(t)
	d := startDev(t, bin)
	if _, stderr, err := run(t, bin, d.brokers, nil, "topic", "create", "t", "-p", "3"); err != nil {
		t.Fatalf("topic create: %v: %s", err, stderr)
	}
	desc, err := d.describe(d.brokers, "t")
	if err != nil {
		t.Fatal(err)
	}
	leaders := map[int]bool{}
	for _, p := range desc.Partitions {
		if len(p.Replicas) != 3 {
			t.Fatalf("partition %d has replicas %v, want 3", p.Partition, p.Replicas)
		}
		leaders[p.Leader] = true
	}
	if len(leaders) != 3 {
		t.Fatalf("leaders of 3 partitions on %d nodes, want all three: %+v", len(leaders), desc)
	}

	// The load: 2,000 keyed values a second for about 12 seconds.
	const n = 24_000
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	prod := exec.CommandContext(ctx, bin, "produce", "t", "--brokers", d.brokers, "--timeout", "60s", "--key-sep", ":")
	stdin, err := prod.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var prodErr strings.Builder
	prod.Stderr = &prodErr
	// On a hang, SIGQUIT makes the producer print its goroutines.
	prod.Cancel = func() error { return prod.Process.Signal(syscall.SIGQUIT) }
	prod.WaitDelay = 5 * time.Second
	if err := prod.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer stdin.Close()
		w := bufio.NewWriter(stdin)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < n; {
			<-tick.C
			for range 20 {
				fmt.Fprintf(w, "k%d:%d\n", i%30, i)
				i++
			}
			w.Flush()
		}
	}()

	for round := range 2 {
		// Let writes flow, then kill partition 0's leader.
		before := waitEndAbove(t, d, d.brokers, 0, int64(1000*(round+1)))
		desc, err := d.describe(d.brokers, "t")
		if err != nil {
			t.Fatal(err)
		}
		leader := desc.Partitions[0].Leader
		killed := time.Now()
		d.signal(leader, syscall.SIGKILL)
		after := waitEndAbove(t, d, d.others(leader), 0, before+100)
		t.Logf("round %d: killed leader node %d at end offset %d; partition 0 at %d again after %v",
			round, leader, before, after, time.Since(killed).Round(time.Millisecond))
		d.restart(leader)
	}
	if err := prod.Wait(); err != nil {
		os.WriteFile(filepath.Join(d.dir, "producer.stderr"), []byte(prodErr.String()), 0o644)
		t.Fatalf("producer: %v: %.2000s", err, prodErr.String())
	}

	out, stderr, err := run(t, bin, d.brokers, nil, "consume", "t", "--until-end", "--format", "json")
	if err != nil {
		t.Fatalf("consume: %v: %s", err, stderr)
	}
	lost, dups, unknown, disorder := check(out, n)
	if lost+dups+unknown+disorder > 0 {
		t.Fatalf("lost %d, duplicated %d, never produced %d, out of order %d", lost, dups, unknown, disorder)
	}

	// Two of three nodes down: no partition can commit.
	d.signal(2, syscall.SIGTERM)
	d.signal(3, syscall.SIGTERM)
	_, stderr, err = run(t, bin, d.node(1).Addr, strings.NewReader("x\n"), "produce", "t", "--timeout", "5s")
	if err == nil || !strings.Contains(stderr, "no leader") {
		t.Fatalf("produce with two of three nodes down: err %v, stderr %q; want a no-leader failure", err, stderr)
	}
	d.restart(2)
	if _, stderr, err := run(t, bin, d.node(1).Addr+","+d.node(2).Addr, strings.NewReader("y\n"), "produce", "t", "--timeout", "60s"); err != nil {
		t.Fatalf("produce after one node came back: %v: %s", err, stderr)
	}
}

// waitEndAbove waits until partition p of topic t has an end offset above
// min, as the nodes at brokers see it, and returns it.
func waitEndAbove(t *testing.T, d *devCluster, brokers string, p int, min int64) int64 {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		desc, err := d.describe(brokers, "t")
		if err == nil && desc.Partitions[p].End > min {
			return desc.Partitions[p].End
		}
		if time.Now().After(deadline) {
			t.Fatalf("partition %d did not pass offset %d within 60s (last error: %v)", p, min, err)
		}
		time.Sleep(50 * time.Millisecond) // polling an offset across processes
	}
}

// check counts, in a consume --format json output of the values 0..n-1:
// values missing, values seen twice, values never produced, and records
// whose offset is not the next in its partition or whose value is below the
// previous one in its partition (one producer keeps each partition's order).
func check(out string, n int) (lost, dups, unknown, disorder int) {
	seen := make([]int, n)
	next := map[int32]int64{}
	last := map[int32]int{}
	for line := range strings.Lines(out) {
		var r jsonRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			unknown++
			continue
		}
		v, err := strconv.Atoi(r.Value)
		if err != nil || v < 0 || v >= n {
			if r.Value != "y" { // the record produced after the outage
				unknown++
			}
			continue
		}
		seen[v]++
		if r.Offset != next[r.Partition] {
			disorder++
		}
		next[r.Partition] = r.Offset + 1
		if l, ok := last[r.Partition]; ok && v < l {
			disorder++
		}
		last[r.Partition] = v
	}
	for _, c := range seen {
		switch {
		case c == 0:
			lost++
		case c > 1:
			dups += c - 1
		}
	}
	return lost, dups, unknown, disorder
}
