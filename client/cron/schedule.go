package cron

import (
	"errors"
	"fmt"
	"strings"
	"time"

	robfig "github.com/robfig/cron/v3"
)

// Schedule gives the fire times of a job.
type Schedule interface {
	// Next returns the first fire time strictly after t, or the zero time
	// when there is none within five years.
	Next(t time.Time) time.Time
}

// parser reads 5 fields (minute first) or 6 (second first), descriptors
// such as @hourly, and @every; CRON_TZ= or TZ= prefixes are handled by
// ParseSchedule.
var parser = robfig.NewParser(robfig.SecondOptional | robfig.Minute | robfig.Hour |
	robfig.Dom | robfig.Month | robfig.Dow | robfig.Descriptor)

// scheduleHelp ends every schedule error: what a schedule may look like.
const scheduleHelp = `use 5 fields "MIN HOUR DOM MON DOW", 6 with seconds first, ` +
	`a descriptor (@yearly, @monthly, @weekly, @daily, @hourly), "@every 30s", ` +
	`optionally prefixed by "CRON_TZ=Area/City "`

// ParseSchedule parses a cron schedule: 5 fields ("*/5 * * * *"), 6 fields
// with seconds first ("0 */5 * * * *"), a descriptor (@yearly, @annually,
// @monthly, @weekly, @daily, @midnight, @hourly) or "@every DURATION", each
// optionally prefixed by "CRON_TZ=ZONE " or "TZ=ZONE ".
//
// A schedule without a zone is read in UTC, not in the machine's zone, so
// that cron instances on machines in different zones agree on the fire
// times (and so on the jobs' dedupe ids). "@every D" fires at the multiples
// of D since the Unix epoch — "@every 1h" on the hour, "@every 15m" at :00,
// :15, :30 and :45 — for the same reason; D is whole seconds, at least 1s.
//
// In a zone with daylight saving time, a local time that the clock change
// skips does not fire that day, and one it repeats fires twice (once per
// UTC time, each with its own ID): schedule such jobs outside the hour of
// the change, or in UTC.
func ParseSchedule(spec string) (Schedule, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, errors.New("empty schedule; " + scheduleHelp)
	}
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		// robfig/cron slices past the first space without checking for one.
		if !strings.ContainsAny(spec, " \t") {
			return nil, fmt.Errorf("schedule %q has a zone but no schedule after it; %s", spec, scheduleHelp)
		}
		spec = strings.Join(strings.Fields(spec), " ")
	}
	if rest, ok := strings.CutPrefix(spec, "@every"); ok {
		return parseEvery(spec, strings.TrimSpace(rest))
	}
	if strings.Contains(spec, "@every") {
		return nil, fmt.Errorf("schedule %q: @every takes no zone (it counts from the Unix epoch); drop the CRON_TZ= prefix", spec)
	}
	s, err := parser.Parse(spec)
	if err != nil && strings.Contains(err.Error(), "bad location") {
		zone, _, _ := strings.Cut(spec[strings.Index(spec, "=")+1:], " ")
		return nil, fmt.Errorf("schedule %q: unknown time zone %q; use a zone of the tz database such as Europe/Paris or America/New_York", spec, zone)
	}
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %v; %s", spec, err, scheduleHelp)
	}
	ss, ok := s.(*robfig.SpecSchedule)
	if !ok {
		return nil, fmt.Errorf("schedule %q: unexpected kind %T", spec, s)
	}
	if ss.Location == time.Local {
		ss.Location = time.UTC
	}
	sched := specSchedule{ss}
	if sched.Next(time.Now()).IsZero() {
		return nil, fmt.Errorf("schedule %q never fires (no match within five years, as on February 30); check the day and month fields", spec)
	}
	return sched, nil
}

func parseEvery(spec, arg string) (Schedule, error) {
	d, err := time.ParseDuration(arg)
	switch {
	case err != nil:
		return nil, fmt.Errorf("schedule %q: %q is not a duration; write one such as \"@every 30s\" or \"@every 1h30m\"", spec, arg)
	case d < time.Second:
		return nil, fmt.Errorf("schedule %q: the interval must be at least 1s", spec)
	case d%time.Second != 0:
		return nil, fmt.Errorf("schedule %q: the interval must be whole seconds, such as 1s or 90s", spec)
	}
	return Every(d), nil
}

// specSchedule is a cron expression; it computes in the expression's zone
// (UTC unless CRON_TZ= says otherwise) and returns UTC times.
type specSchedule struct{ s *robfig.SpecSchedule }

func (s specSchedule) Next(t time.Time) time.Time {
	n := s.s.Next(t)
	if n.IsZero() {
		return n
	}
	return n.UTC()
}

// Every returns a schedule that fires at every multiple of d since the
// Unix epoch. d must be positive.
func Every(d time.Duration) Schedule { return every(d) }

type every time.Duration

func (e every) Next(t time.Time) time.Time {
	d := int64(e)
	n := t.UnixNano()
	q := n / d
	if n < 0 && n%d != 0 {
		q-- // floor for times before the epoch
	}
	return time.Unix(0, (q+1)*d).UTC()
}
