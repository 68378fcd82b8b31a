package cron_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/runnel-dev/runnel/client/cron"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the golden files in testdata")

// TestLoadGolden loads each testdata/jobs/*.yaml and compares what it gives,
// the jobs or the errors, with the .golden file beside it. -rewrite
// rewrites the golden files.
func TestLoadGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/jobs/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			got := describeLoad(file)
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *rewrite {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -rewrite to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", file, diff)
			}
		})
	}
}

func describeLoad(file string) string {
	jobs, err := cron.Load(file)
	var b strings.Builder
	if err != nil {
		for _, e := range unjoin(err) {
			var le *cron.LineError
			if !errors.As(e, &le) {
				fmt.Fprintf(&b, "NOT A LineError: ")
			}
			fmt.Fprintf(&b, "error: %v\n", e)
		}
		return b.String()
	}
	for _, j := range jobs {
		fmt.Fprintf(&b, "line %d: %s schedule=%q topic=%s", j.Line, j.Name, j.Schedule, j.Topic)
		if j.Command != "" {
			fmt.Fprintf(&b, " command=%q", j.Command)
		}
		if j.Payload != nil {
			fmt.Fprintf(&b, " payload=%s", j.Payload)
		}
		fmt.Fprintf(&b, " max_attempts=%d timeout=%v missed=%s partitions=%d\n", j.MaxAttempts, j.Timeout, j.Missed, j.Partitions)
	}
	return b.String()
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := cron.Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file = %v, want os.ErrNotExist", err)
	}
}

func TestJobCheck(t *testing.T) {
	ok := cron.Job{Name: "a", Schedule: "@hourly", Topic: "t", Command: "true"}
	for _, tc := range []struct {
		name string
		edit func(j *cron.Job)
		want string
	}{
		{"valid", func(*cron.Job) {}, ""},
		{"no name", func(j *cron.Job) { j.Name = "" }, "no name"},
		{"long name", func(j *cron.Job) { j.Name = strings.Repeat("x", 201) }, "at most 200"},
		{"at in name", func(j *cron.Job) { j.Name = "a@b" }, "use letters"},
		{"no topic", func(j *cron.Job) { j.Topic = "" }, "no topic"},
		{"payload json", func(j *cron.Job) { j.Command, j.Payload = "", []byte("{") }, "not valid JSON"},
		{"max attempts", func(j *cron.Job) { j.MaxAttempts = -1 }, "negative"},
		{"sub-ms timeout", func(j *cron.Job) { j.Timeout = 1500 }, "whole milliseconds"},
		{"missed", func(j *cron.Job) { j.Missed = "later" }, `missed "later"`},
		{"schedule", func(j *cron.Job) { j.Schedule = "nope" }, "expected 5 to 6 fields"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := ok
			tc.edit(&j)
			err := j.Check()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Check = %v, want an error containing %q", err, tc.want)
			}
			if tc.want == "" && j.Missed != cron.MissedSkip {
				t.Errorf("Missed = %q after Check, want the default %q", j.Missed, cron.MissedSkip)
			}
		})
	}
}
