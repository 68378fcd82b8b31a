package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// groupMember is a `runnel consume --group` process.
type groupMember struct {
	cmd *exec.Cmd
	mu  sync.Mutex
	out bytes.Buffer
}

func (m *groupMember) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.out.Write(p)
}

func (m *groupMember) lines() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return strings.Fields(m.out.String())
}

func startMember(t *testing.T, d *devCluster, group, topic string) *groupMember {
	t.Helper()
	m := &groupMember{}
	m.cmd = exec.Command(d.bin, "consume", topic, "--group", group, "--brokers", d.brokers)
	m.cmd.Stdout = m
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.cmd.Process.Kill()
		m.cmd.Wait()
	})
	return m
}

type groupDescribe struct {
	Members []struct {
		Member   string `json:"member"`
		ClientID string `json:"client_id"`
		Assigned []struct {
			Partition int `json:"partition"`
		} `json:"assigned"`
	} `json:"members"`
	Partitions []struct {
		Partition int     `json:"partition"`
		Committed *int64  `json:"committed"`
		EndOffset int64   `json:"end_offset"`
		Lag       int64   `json:"lag"`
		Member    *string `json:"member"`
	} `json:"partitions"`
}

// counts returns how many partitions each member is assigned, sorted.
func (g groupDescribe) counts() []int {
	var out []int
	for _, m := range g.Members {
		out = append(out, len(m.Assigned))
	}
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func describeGroup(t *testing.T, d *devCluster, group string) groupDescribe {
	t.Helper()
	g, err := tryDescribeGroup(t, d, group)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// tryDescribeGroup runs group describe; a group whose first member has not
// joined yet is not found.
func tryDescribeGroup(t *testing.T, d *devCluster, group string) (groupDescribe, error) {
	var g groupDescribe
	stdout, stderr, err := run(t, d.bin, d.brokers, nil, "group", "describe", group, "--format", "json")
	if err != nil {
		return g, fmt.Errorf("group describe: %v: %s", err, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), &g); err != nil {
		return g, fmt.Errorf("group describe: %v: %s", err, stdout)
	}
	return g, nil
}

// waitCounts waits until the group's members hold want partitions each
// (sorted) and returns how long that took.
func waitCounts(t *testing.T, d *devCluster, group string, want []int, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var last []int
	for time.Since(start) < limit {
		g, err := tryDescribeGroup(t, d, group)
		if err != nil {
			last = nil // not joined yet, or the coordinator is moving
		} else {
			last = g.counts()
		}
		if err == nil && fmt.Sprint(last) == fmt.Sprint(want) {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond) // polling the group's state
	}
	t.Fatalf("group %s: members hold %v partitions after %v, want %v", group, last, limit, want)
	return 0
}

// TestGroupMembersOnACluster runs `runnel consume --group` processes on
// `runnel dev`: one member gets all three partitions, three get one each,
// a fourth stays idle; a member killed with kill -9 or stopped cleanly
// loses its partitions at once, a silent one (SIGSTOP) after its session
// timeout; every record is printed at least once and the group drains to
// lag 0.
func TestGroupMembersOnACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster and several consumers")
	}
	bin := buildRunnel(t)
	d := startDev(t, bin)
	mustRun(t, bin, d.brokers, nil, "topic", "create", "jobs", "--partitions", "3")
	var in strings.Builder
	const n = 3000
	for i := range n {
		fmt.Fprintf(&in, "%d,%d\n", i, i)
	}
	mustRun(t, bin, d.brokers, strings.NewReader(in.String()), "produce", "jobs", "--key-sep", ",")

	members := []*groupMember{startMember(t, d, "g", "jobs")}
	waitCounts(t, d, "g", []int{3}, 30*time.Second)
	members = append(members, startMember(t, d, "g", "jobs"), startMember(t, d, "g", "jobs"))
	waitCounts(t, d, "g", []int{1, 1, 1}, 30*time.Second)
	members = append(members, startMember(t, d, "g", "jobs"))
	waitCounts(t, d, "g", []int{0, 1, 1, 1}, 30*time.Second)

	// kill -9: the stream breaks, the partition moves to the idle member.
	victim := busyMember(t, d, members)
	victim.cmd.Process.Signal(syscall.SIGKILL)
	victim.cmd.Wait()
	took := waitCounts(t, d, "g", []int{1, 1, 1}, 30*time.Second)
	t.Logf("partition moved %v after kill -9 of a member", took.Round(10*time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("a killed member's partition moved after %v; a broken stream should move it at once", took)
	}

	// A clean exit (SIGINT, as Ctrl-C): moves at once too.
	leaving := busyMember(t, d, members)
	leaving.cmd.Process.Signal(syscall.SIGINT)
	if err := leaving.cmd.Wait(); err != nil {
		t.Errorf("member exit on SIGINT: %v", err)
	}
	took = waitCounts(t, d, "g", []int{1, 2}, 30*time.Second)
	t.Logf("partition moved %v after a member's clean exit", took.Round(10*time.Millisecond))

	// A silent member (stopped, its stream open) loses its partitions
	// after the session timeout (10 s).
	silent := busyMember(t, d, members)
	silent.cmd.Process.Signal(syscall.SIGSTOP)
	took = waitCounts(t, d, "g", []int{3}, 40*time.Second)
	t.Logf("partitions moved %v after a member went silent", took.Round(100*time.Millisecond))
	if took < 5*time.Second {
		t.Errorf("a silent member lost its partitions after %v, before its session timeout", took)
	}
	silent.cmd.Process.Signal(syscall.SIGCONT)

	// Every record printed at least once, and the group drains.
	deadline := time.Now().Add(60 * time.Second)
	for {
		seen := map[string]bool{}
		for _, m := range members {
			for _, l := range m.lines() {
				seen[l] = true
			}
		}
		g := describeGroup(t, d, "g")
		var lag int64
		for _, p := range g.Partitions {
			lag += p.Lag
		}
		if len(seen) == n && lag == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s: %d of %d records printed, lag %d", len(seen), n, lag)
		}
		time.Sleep(200 * time.Millisecond) // polling output and commits
	}
}

// busyMember returns the process of a live member that holds a
// partition: `consume --group` names its member after its pid.
func busyMember(t *testing.T, d *devCluster, members []*groupMember) *groupMember {
	t.Helper()
	g := describeGroup(t, d, "g")
	for _, gm := range g.Members {
		if len(gm.Assigned) == 0 {
			continue
		}
		for _, m := range members {
			if m.cmd.ProcessState == nil && gm.ClientID == "runnel-consume-"+strconv.Itoa(m.cmd.Process.Pid) {
				return m
			}
		}
	}
	t.Fatalf("no live member process holds a partition: %+v", g.Members)
	return nil
}
