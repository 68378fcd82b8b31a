package worker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/client/job"
	"github.com/runnel-dev/runnel/client/worker"
)

// execJob returns a job that runs command.
func execJob(command string) *worker.Job {
	return &worker.Job{Job: job.Job{
		Version: job.Version, ID: "report@2026-11-22T15:00:00Z", Name: "report", Command: command,
		ScheduledAt: time.Date(2026, 11, 22, 15, 0, 0, 0, time.UTC), Attempt: 2, MaxAttempts: 3,
	}}
}

func TestExecEnvironmentAndOutput(t *testing.T) {
	j := execJob(`echo "$RUNNEL_JOB_ID|$RUNNEL_JOB_NAME|$RUNNEL_SCHEDULED_AT|$RUNNEL_ATTEMPT|$EXTRA"; echo oops >&2`)
	err := worker.Exec(worker.ExecOptions{Env: []string{"EXTRA=x"}})(t.Context(), j)
	if err != nil {
		t.Fatalf("exec: %v", err)
	}
	want := "report@2026-11-22T15:00:00Z|report|2026-11-22T15:00:00Z|2|x\noops\n"
	if j.Output != want {
		t.Errorf("output %q, want %q", j.Output, want)
	}
	if j.ExitCode == nil || *j.ExitCode != 0 {
		t.Errorf("exit code %v, want 0", j.ExitCode)
	}
}

func TestExecExitCode(t *testing.T) {
	j := execJob(`echo failing; exit 3`)
	err := worker.Exec(worker.ExecOptions{})(t.Context(), j)
	var ee *worker.ExitError
	if !errors.As(err, &ee) || ee.Code != 3 {
		t.Fatalf("exec: %v, want an ExitError with code 3", err)
	}
	if j.ExitCode == nil || *j.ExitCode != 3 || j.Output != "failing\n" {
		t.Errorf("exit code %v output %q, want 3 and the output", j.ExitCode, j.Output)
	}
}

func TestExecOutputKeepsTheEnd(t *testing.T) {
	j := execJob(`head -c 10000 /dev/zero | tr '\0' a; printf END`)
	if err := worker.Exec(worker.ExecOptions{})(t.Context(), j); err != nil {
		t.Fatalf("exec: %v", err)
	}
	if len(j.Output) != worker.OutputLimit || !strings.HasSuffix(j.Output, "aaaEND") {
		t.Errorf("output of %d bytes ending %q, want the last %d ending aaaEND", len(j.Output), j.Output[max(len(j.Output)-6, 0):], worker.OutputLimit)
	}
}

func TestExecNotACommand(t *testing.T) {
	var perm *worker.PermanentError
	j := execJob("")
	if err := worker.Exec(worker.ExecOptions{})(t.Context(), j); !errors.As(err, &perm) {
		t.Errorf("job without a command: %v, want a permanent failure", err)
	}
	j = &worker.Job{DecodeError: errors.New("not json")}
	if err := worker.Exec(worker.ExecOptions{})(t.Context(), j); !errors.As(err, &perm) {
		t.Errorf("record that is not a job: %v, want a permanent failure", err)
	}
}

// TestExecKillsProcessGroup checks that ending a command's context kills
// its whole process group: the shell, a child in the background and one
// that ignores SIGTERM.
func TestExecKillsProcessGroup(t *testing.T) {
	pids := filepath.Join(t.TempDir(), "pids")
	j := execJob(fmt.Sprintf(`sleep 60 & echo $! >> %[1]s
(trap '' TERM; exec sleep 60) & echo $! >> %[1]s
echo $$ >> %[1]s
wait`, pids))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- worker.Exec(worker.ExecOptions{KillGrace: 200 * time.Millisecond})(ctx, j) }()

	var started []int
	waitFor(t, "the command to write its pids", func() bool {
		started = readPids(t, pids)
		return len(started) == 3
	})
	t.Cleanup(func() {
		for _, pid := range started {
			syscall.Kill(pid, syscall.SIGKILL) // whatever a failed test left
		}
	})
	cancel()
	err := <-errc
	var ee *worker.ExitError
	if !errors.As(err, &ee) || ee.Signal == "" {
		t.Errorf("exec: %v, want an ExitError for a signal", err)
	}
	for _, pid := range started {
		waitFor(t, fmt.Sprintf("process %d to end", pid), func() bool { return !alive(pid) })
	}
}

// TestExecTimeoutThroughWorker runs `sleep 60` under a worker with a short
// job timeout: the run is stopped and, being the last attempt,
// dead-lettered with the signal's exit code and the reason.
func TestExecTimeoutThroughWorker(t *testing.T) {
	q := newFakeQueue(time.Minute)
	q.addJob(t, job.Job{Name: "sleeper", Command: "sleep 60 & sleep 60", MaxAttempts: 1, TimeoutMS: 300})
	stop := startWorker(t, q, worker.Exec(worker.ExecOptions{KillGrace: 200 * time.Millisecond}), worker.Options{})
	q.waitSettled(t, t.Context())
	stopWorker(t, stop)

	if len(q.rejects) != 1 {
		t.Fatalf("calls %q, want one reject", q.callList())
	}
	dl := decodeDeadLetter(t, q.rejects[0])
	if dl.ExitCode == nil || *dl.ExitCode != 128+int(syscall.SIGTERM) || dl.Attempts != 1 ||
		!strings.Contains(dl.Reason, "timed out after 300ms") {
		t.Errorf("dead letter %+v, want exit code 143 and a timeout reason", dl)
	}
}

// waitFor polls cond until it holds, failing the test after 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readPids(t *testing.T, path string) []int {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil // a line being written
		}
		pids = append(pids, pid)
	}
	return pids
}

// alive reports whether process pid exists and is not a zombie waiting
// for a parent that does not reap.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
