package cron_test

import (
	"strings"
	"testing"
	"time"

	"github.com/runnel-dev/runnel/client/cron"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func TestParseSchedule(t *testing.T) {
	from := utc("2026-03-28T23:59:30.5Z")
	for _, tc := range []struct {
		spec string
		want []string // the next fires after from, in UTC
	}{
		{"* * * * *", []string{"2026-03-29T00:00:00Z", "2026-03-29T00:01:00Z"}},
		{"*/15 * * * * *", []string{"2026-03-28T23:59:45Z", "2026-03-29T00:00:00Z"}},
		{"0 3 * * *", []string{"2026-03-29T03:00:00Z", "2026-03-30T03:00:00Z"}},
		{"@hourly", []string{"2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z"}},
		{"@daily", []string{"2026-03-29T00:00:00Z", "2026-03-30T00:00:00Z"}},
		{"@every 1s", []string{"2026-03-28T23:59:31Z", "2026-03-28T23:59:32Z"}},
		{"@every 15m", []string{"2026-03-29T00:00:00Z", "2026-03-29T00:15:00Z"}},
		{"@every 1h", []string{"2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z"}},
		// Paris moves to summer time at 02:00 local on 2026-03-29 (01:00 UTC).
		{"CRON_TZ=Europe/Paris 0 3 * * *", []string{"2026-03-29T01:00:00Z", "2026-03-30T01:00:00Z"}},
		{"TZ=Europe/Paris  30 0 * * *", []string{"2026-03-29T22:30:00Z", "2026-03-30T22:30:00Z"}},
		{"CRON_TZ=America/New_York @daily", []string{"2026-03-29T04:00:00Z", "2026-03-30T04:00:00Z"}},
		// 02:30 in Paris does not exist on 2026-03-29: no fire that day.
		{"CRON_TZ=Europe/Paris 30 2 * * *", []string{"2026-03-30T00:30:00Z", "2026-03-31T00:30:00Z"}},
		// 02:30 in Paris happens twice on 2026-10-25: two fires.
		{"CRON_TZ=Europe/Paris 30 2 25 10 *", []string{"2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z", "2027-10-25T00:30:00Z"}},
	} {
		s, err := cron.ParseSchedule(tc.spec)
		if err != nil {
			t.Errorf("ParseSchedule(%q): %v", tc.spec, err)
			continue
		}
		at := from
		for i, w := range tc.want {
			at = s.Next(at)
			if !at.Equal(utc(w)) || at.Location() != time.UTC {
				t.Errorf("%q: fire %d = %v, want %s", tc.spec, i+1, at, w)
				break
			}
		}
	}
}

func TestParseScheduleErrors(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"", "empty schedule"},
		{"* * *", "expected 5 to 6 fields"},
		{"61 * * * *", "above maximum"},
		{"@fortnightly", "unrecognized descriptor"},
		{"@every", "is not a duration"},
		{"@every soon", "is not a duration"},
		{"@every 500ms", "at least 1s"},
		{"@every 1500ms", "whole seconds"},
		{"CRON_TZ=Mars/Olympus 0 * * * *", `unknown time zone "Mars/Olympus"`},
		{"CRON_TZ=UTC", "no schedule after it"},
		{"CRON_TZ=UTC @every 1m", "@every takes no zone"},
		{"0 0 30 2 *", "never fires"},
	} {
		_, err := cron.ParseSchedule(tc.spec)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseSchedule(%q) = %v, want an error containing %q", tc.spec, err, tc.want)
		}
	}
}

func TestEveryBeforeEpoch(t *testing.T) {
	s := cron.Every(time.Minute)
	got := s.Next(utc("1969-12-31T23:58:30Z"))
	if want := utc("1969-12-31T23:59:00Z"); !got.Equal(want) {
		t.Errorf("Next = %v, want %v", got, want)
	}
}

func TestUpcoming(t *testing.T) {
	jobs, err := cron.Parse("jobs.yaml", []byte(`
jobs:
  - {name: b, schedule: "@every 30s", topic: t, command: "true"}
  - {name: a, schedule: "* * * * *", topic: t, command: "true"}
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range cron.Upcoming(jobs, utc("2026-01-01T00:00:10Z"), 2) {
		got = append(got, f.ID())
	}
	want := []string{"b@2026-01-01T00:00:30Z", "a@2026-01-01T00:01:00Z", "b@2026-01-01T00:01:00Z", "a@2026-01-01T00:02:00Z"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Upcoming = %v, want %v", got, want)
	}
}
