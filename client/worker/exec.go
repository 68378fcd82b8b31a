package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultKillGrace is how long Exec waits between SIGTERM and SIGKILL.
const DefaultKillGrace = 5 * time.Second

// ExecOptions configure Exec.
type ExecOptions struct {
	// Shell runs the command as Shell -c COMMAND; default "/bin/sh".
	Shell string
	// KillGrace is how long a command has between SIGTERM and SIGKILL
	// when its context ends; default DefaultKillGrace.
	KillGrace time.Duration
	// Env is added to the worker's own environment and the RUNNEL_*
	// variables.
	Env []string
}

// Exec returns a Handler that runs each job's command with Shell -c, in a
// process group of its own, with the worker's environment plus
// RUNNEL_JOB_ID, RUNNEL_JOB_NAME, RUNNEL_SCHEDULED_AT (RFC 3339, UTC) and
// RUNNEL_ATTEMPT. Standard output and error go, combined, into j.Output
// (the worker keeps the last OutputLimit bytes), and the exit code into
// j.ExitCode.
//
// When the job's context ends (its timeout, a lost lease, a drain that ran
// out of time) the whole process group gets SIGTERM, and SIGKILL after
// KillGrace. When the command itself exits, whatever it left running in its
// group is killed too: a job is over when its command is. On Linux the
// shell also gets SIGKILL if the worker dies without a chance to clean up;
// processes the shell started then run on until they end.
//
// A command that exits 0 succeeds; any other exit is an *ExitError and the
// job runs again (or is dead-lettered after its last attempt). A record
// that is not a job, or a job without a command, is a permanent failure.
func Exec(opts ExecOptions) Handler {
	if opts.Shell == "" {
		opts.Shell = "/bin/sh"
	}
	if opts.KillGrace <= 0 {
		opts.KillGrace = DefaultKillGrace
	}
	return func(ctx context.Context, j *Job) error {
		if j.DecodeError != nil {
			return Permanent(fmt.Errorf("the record is not a job, so it has no command to run: %w", j.DecodeError))
		}
		if strings.TrimSpace(j.Command) == "" {
			return Permanent(fmt.Errorf("job %q has no command (field \"command\"); an exec worker runs a job's command", j.ID))
		}
		out := &tailBuffer{limit: OutputLimit}
		code, err := runCommand(ctx, opts, j, out)
		j.Output = out.String()
		if code >= 0 {
			j.ExitCode = &code
		}
		return err
	}
}

// runCommand runs j's command and returns its exit code (-1 when it did
// not start) and error.
func runCommand(ctx context.Context, opts ExecOptions, j *Job, out *tailBuffer) (int, error) {
	cmd := exec.CommandContext(ctx, opts.Shell, "-c", j.Command)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	dieWithWorker(cmd.SysProcAttr)
	cmd.Env = append(os.Environ(),
		"RUNNEL_JOB_ID="+j.ID,
		"RUNNEL_JOB_NAME="+j.Name,
		"RUNNEL_SCHEDULED_AT="+j.ScheduledAt.UTC().Format(time.RFC3339Nano),
		"RUNNEL_ATTEMPT="+strconv.Itoa(j.Attempt),
	)
	cmd.Env = append(cmd.Env, opts.Env...)
	cmd.Stdout, cmd.Stderr = out, out
	// On ctx's end: SIGTERM to the group; after WaitDelay os/exec kills
	// the shell and stops waiting for output; the group's SIGKILL follows
	// below.
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = opts.KillGrace
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("start %s -c %q: %w", opts.Shell, j.Command, err)
	}
	err := cmd.Wait()
	// Whatever is left of the group, such as a child that ignored SIGTERM
	// or one sent to the background, ends with the job.
	killGroup(cmd.Process.Pid, syscall.SIGKILL)

	ps := cmd.ProcessState
	if ps == nil {
		return -1, fmt.Errorf("run %s -c %q: %w", opts.Shell, j.Command, err)
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code := 128 + int(ws.Signal())
		return code, &ExitError{Code: code, Signal: ws.Signal().String()}
	}
	code := ps.ExitCode()
	if code != 0 {
		return code, &ExitError{Code: code}
	}
	if err != nil && !errors.Is(err, exec.ErrWaitDelay) {
		// Exited 0, but reading its output failed.
		return code, fmt.Errorf("run %s -c %q: %w", opts.Shell, j.Command, err)
	}
	return 0, nil
}

// killGroup sends sig to the process group led by pid; a group that is
// gone already is not an error.
func killGroup(pid int, sig syscall.Signal) error {
	if err := syscall.Kill(-pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal process group %d: %w", pid, err)
	}
	return nil
}

// tailBuffer is an io.Writer that keeps the last limit bytes written.
type tailBuffer struct {
	mu    sync.Mutex
	limit int
	buf   []byte
	cut   bool // bytes were dropped from the front
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if len(p) >= b.limit {
		p = p[len(p)-b.limit:]
		b.buf = append(b.buf[:0], p...)
		b.cut = true
		return n, nil
	}
	if over := len(b.buf) + len(p) - b.limit; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
		b.cut = true
	}
	b.buf = append(b.buf, p...)
	return n, nil
}

// String returns the bytes kept, starting at a whole UTF-8 character when
// the front was cut.
func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cut {
		return string(trimPartialRune(b.buf))
	}
	return string(b.buf)
}
