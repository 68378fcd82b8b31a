package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	HTTP string   `json:"http"`
	Data string   `json:"data"`
	Cmd  []string `json:"cmd"`
}

func startDev(t *testing.T, bin string) *devCluster {
	t.Helper()
	dir := keptDir(t)
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

// keptDir returns a folder for the cluster's data and logs: under
// $RUNNEL_E2E_KEEP, where it stays after the test for reading the node logs,
// or else a temporary one.
func keptDir(t *testing.T) string {
	t.Helper()
	keep := os.Getenv("RUNNEL_E2E_KEEP")
	if keep == "" {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp(keep, strings.ReplaceAll(t.Name(), "/", "_")+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster data and logs in %s", dir)
	return dir
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
	defer logf.Close() // the node writes to its own copy
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

// TestClusterKillLeader is the kill-the-leader check CI runs: three kills of
// partition 0's leader, after each of which partition 0 must acknowledge
// records again within maxResume. That time is spent on raft's election
// once the killed leader's heartbeats stop (1 to 3 s: a 1 s heartbeat
// timeout, pre-vote). The new leader hands leadership back to the preferred
// replica only once that replica answers and has caught up, and turns
// writes away (no leader, retried by the producer) while a transfer runs.
func TestClusterKillLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-node cluster of real processes")
	}
	killLeader(t, 3)
}

// TestClusterKillLeaderSoak is the same check with more kills; set
// RUNNEL_E2E_SOAK to the number of kills to run it.
func TestClusterKillLeaderSoak(t *testing.T) {
	kills, _ := strconv.Atoi(os.Getenv("RUNNEL_E2E_SOAK"))
	if kills <= 0 {
		t.Skip("set RUNNEL_E2E_SOAK=N to kill partition 0's leader N times")
	}
	killLeader(t, kills)
}

// maxResume is how long after a kill of its leader partition 0 may take to
// acknowledge a record again.
const maxResume = 5 * time.Second

// killLeader feeds unique values line by line into `runnel produce` with
// acks=all while the leader of partition 0 is killed with SIGKILL and
// restarted, kills times; each time partition 0 must acknowledge records
// again within maxResume. Then it checks that the producer exited 0 and
// that every value is there exactly once, offsets dense, each partition in
// produce order. Then, with two of three nodes stopped, a produce fails
// with a no-leader error within its timeout, and succeeds again once one
// node is back.
func killLeader(t *testing.T, kills int) {
	bin := buildRunnel(t)
	d := startDev(t, bin)
	mustRun(t, bin, d.brokers, nil, "topic", "create", "t", "-p", "3")
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

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(kills)*time.Minute+time.Minute)
	defer cancel()
	prod := startProducer(t, ctx, d)

	var resumes []time.Duration
	for round := range kills {
		// Let writes flow for a while, then kill partition 0's leader.
		prod.waitAcks(t, prod.acked(0)+1000)
		leader := d.raftLeader(t, "t/0")
		killed := time.Now()
		d.signal(leader, syscall.SIGKILL)
		resume := prod.resumedAfter(t, killed)
		resumes = append(resumes, resume)
		t.Logf("round %d: killed node %d, the leader of partition 0; it acknowledged records again after %v",
			round, leader, resume.Round(time.Millisecond))
		if resume > maxResume {
			t.Errorf("round %d: partition 0 took %v after its leader was killed to acknowledge a record; want at most %v (producer log: %s)",
				round, resume.Round(time.Millisecond), maxResume, prod.logPath)
		}
		d.restart(leader)
		d.waitReady(t, leader)
	}
	n := prod.finish(t)

	out := mustRun(t, bin, d.brokers, nil, "consume", "t", "--until-end", "--format", "json")
	lost, dups, unknown, disorder := check(out, n)
	if lost+dups+unknown+disorder > 0 {
		t.Fatalf("lost %d, duplicated %d, never produced %d, out of order %d", lost, dups, unknown, disorder)
	}
	slices.Sort(resumes)
	t.Logf("resume times over %d kills: min %v, median %v, max %v", len(resumes),
		resumes[0].Round(time.Millisecond), resumes[len(resumes)/2].Round(time.Millisecond), resumes[len(resumes)-1].Round(time.Millisecond))

	// Two of three nodes down: no partition can commit, and a produce says
	// so within its timeout.
	d.signal(2, syscall.SIGTERM)
	d.signal(3, syscall.SIGTERM)
	start := time.Now()
	_, stderr, err := run(t, bin, d.node(1).Addr, strings.NewReader("x\n"), "produce", "t", "--timeout", "5s")
	if err == nil || !strings.Contains(stderr, "no leader") {
		t.Fatalf("produce with two of three nodes down: err %v, stderr %q; want a no-leader failure", err, stderr)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("produce with --timeout 5s and two of three nodes down took %v to fail", took.Round(time.Millisecond))
	}
	d.restart(2)
	if _, stderr, err := run(t, bin, d.node(1).Addr+","+d.node(2).Addr, strings.NewReader("y\n"), "produce", "t", "--timeout", "60s"); err != nil {
		t.Fatalf("produce after one node came back: %v: %s", err, stderr)
	}
}

// raftLeader returns the node that leads raft group g ("TOPIC/PARTITION")
// by its own account, asking each node in turn; the controller's view of
// partition leaders can lag behind.
func (d *devCluster) raftLeader(t *testing.T, g string) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, n := range d.nodes {
			stdout, _, err := run(t, d.bin, n.Addr, nil, "cluster", "info", "--node", n.Addr, "--format", "json")
			if err != nil {
				continue
			}
			var info struct {
				Node   int `json:"node"`
				Groups []struct {
					Group string `json:"group"`
					State string `json:"state"`
				} `json:"groups"`
			}
			if json.Unmarshal([]byte(stdout), &info) != nil {
				continue
			}
			for _, gr := range info.Groups {
				if gr.Group == g && gr.State == "Leader" {
					return info.Node
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no node leads %s", g)
		}
		time.Sleep(50 * time.Millisecond) // polling other processes
	}
}

// producer is a `runnel produce --print-offsets` fed unique keyed values
// at a steady rate, and the acknowledgements it reports.
type producer struct {
	cmd      *exec.Cmd
	stop     chan struct{} // closed to end the input
	fed      chan int      // the number of values fed, once the input ended
	fedSoFar atomic.Int64  // values written to its stdin so far
	logPath  string        // the producer's stderr
	read     chan struct{} // closed when stdout is read to the end

	mu   sync.Mutex
	acks [3]int
	p0   []time.Time // when each acknowledgement of partition 0 arrived
	more chan struct{}
}

// producerRate is how many values a second the producer is fed.
const producerRate = 2000

func startProducer(t *testing.T, ctx context.Context, d *devCluster) *producer {
	t.Helper()
	p := &producer{stop: make(chan struct{}), fed: make(chan int, 1), read: make(chan struct{}), more: make(chan struct{})}
	p.logPath = filepath.Join(d.dir, "producer.log")
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	p.cmd = exec.CommandContext(ctx, d.bin, "produce", "t", "--brokers", d.brokers, "--timeout", "60s",
		"--key-sep", ":", "--print-offsets", "--log-level", "debug")
	p.cmd.Stderr = logf
	// On a hang, SIGQUIT makes the producer print its goroutines.
	p.cmd.Cancel = func() error { return p.cmd.Process.Signal(syscall.SIGQUIT) }
	p.cmd.WaitDelay = 5 * time.Second
	stdin, err := p.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acksf, err := os.Create(filepath.Join(d.dir, "producer.acks"))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.read)
		defer acksf.Close()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			// Each acknowledgement with the time it arrived, for reading
			// after a failure.
			fmt.Fprintf(acksf, "%s %s\n", time.Now().Format("15:04:05.000"), sc.Bytes())
			var a struct {
				Partition int `json:"partition"`
			}
			if json.Unmarshal(sc.Bytes(), &a) != nil || a.Partition < 0 || a.Partition >= len(p.acks) {
				continue
			}
			now := time.Now()
			p.mu.Lock()
			p.acks[a.Partition]++
			if a.Partition == 0 {
				p.p0 = append(p.p0, now)
			}
			close(p.more)
			p.more = make(chan struct{})
			p.mu.Unlock()
		}
	}()
	go func() {
		defer stdin.Close()
		w := bufio.NewWriter(stdin)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		i := 0
		defer func() { p.fed <- i }()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			for range producerRate / 100 {
				fmt.Fprintf(w, "k%d:%d\n", i%30, i)
				i++
			}
			if w.Flush() != nil {
				return
			}
			p.fedSoFar.Store(int64(i))
		}
	}()
	return p
}

// acked returns how many records of partition p were acknowledged so far.
func (p *producer) acked(part int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.acks[part]
}

// waitAcks waits until partition 0 has n acknowledged records.
func (p *producer) waitAcks(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		p.mu.Lock()
		got, more := p.acks[0], p.more
		p.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-more:
		case <-p.read:
			t.Fatalf("producer ended with %d records of partition 0 acknowledged, waiting for %d; its log: %s", got, n, p.logPath)
		case <-deadline:
			t.Fatalf("partition 0 has %d records acknowledged after 60s, waiting for %d, with %d values fed; producer log: %s", got, n, p.fedSoFar.Load(), p.logPath)
		}
	}
}

// resumedAfter waits until partition 0 acknowledges records steadily again
// after its leader was killed at killed, and returns how long after the kill
// the first of them was acknowledged. Answers the killed leader sent just
// before it died can arrive after the kill; they are told apart by the pause
// that follows them while a new leader is elected.
func (p *producer) resumedAfter(t *testing.T, killed time.Time) time.Duration {
	t.Helper()
	// Steady again: this many acknowledgements after the kill, the last of
	// them a while after it.
	const (
		steady = 200
		pause  = 100 * time.Millisecond
	)
	deadline := time.After(60 * time.Second)
	for {
		p.mu.Lock()
		acks, more := p.p0, p.more
		p.mu.Unlock()
		i, _ := slices.BinarySearchFunc(acks, killed, func(a, k time.Time) int { return a.Compare(k) })
		if len(acks)-i >= steady {
			for j := i; j < len(acks); j++ {
				if j == 0 || acks[j].Sub(acks[j-1]) >= pause {
					return acks[j].Sub(killed)
				}
			}
			return acks[i].Sub(killed)
		}
		select {
		case <-more:
		case <-p.read:
			t.Fatalf("producer ended before partition 0 acknowledged records again after the kill; its log: %s", p.logPath)
		case <-deadline:
			t.Fatalf("partition 0 acknowledged %d records in the 60s after its leader was killed; producer log: %s", len(acks)-i, p.logPath)
		}
	}
}

// finish ends the input, waits for the producer to exit 0 and returns the
// number of values fed.
func (p *producer) finish(t *testing.T) int {
	t.Helper()
	close(p.stop)
	n := <-p.fed
	if err := p.cmd.Wait(); err != nil {
		log, _ := os.ReadFile(p.logPath)
		t.Fatalf("producer: %v; the end of its log (%s):\n%s", err, p.logPath, tail(log, 3000))
	}
	return n
}

// tail returns the last n bytes of b.
func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// waitReady waits until node id answers /readyz with 200: it is up and
// knows the leader of every partition it hosts.
func (d *devCluster) waitReady(t *testing.T, id int) {
	t.Helper()
	url := "http://" + d.node(id).HTTP + "/readyz"
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %d not ready 60s after its restart (last: %v); its log: %s", id, err, filepath.Join(d.dir, fmt.Sprintf("node%d.restart.log", id)))
		}
		time.Sleep(50 * time.Millisecond) // polling another process's HTTP endpoint
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
