package cron_test

import (
	"testing"
	"time"

	"github.com/runnel-dev/runnel/client/cron"
)

// FuzzParseSchedule checks that no schedule string panics the parser, and
// that a schedule it accepts gives fire times strictly after the time asked.
func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{"* * * * *", "*/5 * * * * *", "@every 90s", "@hourly", "CRON_TZ=Europe/Paris 0 3 * * 1-5",
		"TZ=UTC 0 0 1 1 *", "0 0 29 2 *", "@every", "CRON_TZ=", "5-1 * * * *", "*/0 * * * *", "0 0 ? * MON"} {
		f.Add(s)
	}
	from := time.Date(2026, 11, 22, 16, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := cron.ParseSchedule(spec)
		if err != nil {
			return
		}
		if next := s.Next(from); !next.IsZero() && !next.After(from) {
			t.Fatalf("%q: Next(%v) = %v, not after", spec, from, next)
		}
	})
}

// FuzzParse checks that no job file panics Parse.
func FuzzParse(f *testing.F) {
	f.Add([]byte("jobs:\n  - {name: a, schedule: \"@hourly\", topic: t, command: x}\n"))
	f.Add([]byte("jobs:\n  - name: a\n    schedule: \"* * *\"\n    payload: {a: [1, {b: c}], 1: x}\n"))
	f.Add([]byte("jobs: [1, [2], {name: [x]}]\n"))
	f.Add([]byte("jobs:\n  - &a {name: a}\n  - *a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		jobs, err := cron.Parse("jobs.yaml", data)
		if err == nil && len(jobs) == 0 {
			t.Fatalf("Parse(%q) gave no jobs and no error", data)
		}
	})
}
