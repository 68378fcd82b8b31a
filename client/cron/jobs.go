package cron

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Missed is a job's policy for fire times that passed while no cron
// instance was running, or while cron was more than Options.Grace late.
type Missed string

// The policies for missed fire times.
const (
	// MissedSkip drops missed fire times (the default).
	MissedSkip Missed = "skip"
	// MissedOnce publishes one job, for the latest missed fire time,
	// however many were missed.
	MissedOnce Missed = "once"
	// MissedCatchUp publishes a job for each missed fire time, at most
	// MaxCatchUp of them (the latest).
	MissedCatchUp Missed = "catchup"
)

// MaxCatchUp bounds the missed fire times a MissedCatchUp job publishes at
// once; older ones are dropped with a warning.
const MaxCatchUp = 1000

// maxNameLen keeps a job's dedupe id ("<name>@<RFC 3339 time>") within the
// 256 bytes the broker remembers.
const maxNameLen = 200

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)

// Job is one scheduled job.
type Job struct {
	// Name identifies the job: it is the key of its records and the first
	// part of their dedupe ids. Letters, digits, '.', '_', ':' and '-'.
	Name string
	// Schedule says when the job fires; see ParseSchedule.
	Schedule string
	// Topic is where the job's records go.
	Topic string
	// Command is the shell command a worker runs; exactly one of Command
	// and Payload is set.
	Command string
	// Payload is JSON handed to a worker's handler.
	Payload json.RawMessage
	// MaxAttempts bounds the runs of one fire; 0 leaves it to the worker.
	MaxAttempts int
	// Timeout bounds one run; 0 leaves it to the worker.
	Timeout time.Duration
	// Missed is the policy for missed fire times; empty means MissedSkip.
	Missed Missed
	// Partitions is the partition count Topic is created with when it does
	// not exist; 0 means Options.Partitions.
	Partitions int
	// Line is the job's line in its file, 0 when it was not read from one.
	Line int

	sched Schedule
}

// Check validates j and parses its schedule. New calls it; Load and Parse
// call it for each job they read.
func (j *Job) Check() error {
	switch {
	case j.Name == "":
		return errors.New("no name; give each job a unique name")
	case len(j.Name) > maxNameLen:
		return fmt.Errorf("name is %d bytes long; use at most %d", len(j.Name), maxNameLen)
	case !validName.MatchString(j.Name):
		return fmt.Errorf("name %q: use letters, digits, '.', '_', ':' and '-', starting with a letter or digit", j.Name)
	case j.Topic == "":
		return errors.New("no topic; say which topic the job's records go to")
	case j.Command == "" && j.Payload == nil:
		return errors.New("neither command nor payload; give a command for `runnel worker --exec`, or a payload for a Go handler")
	case j.Command != "" && j.Payload != nil:
		return errors.New("both command and payload; give one of them")
	case j.Payload != nil && !json.Valid(j.Payload):
		return errors.New("payload is not valid JSON")
	case j.MaxAttempts < 0:
		return fmt.Errorf("max_attempts %d is negative; use 1 or more, or 0 for the worker's default", j.MaxAttempts)
	case j.Timeout < 0:
		return fmt.Errorf("timeout %v is negative; use a positive duration such as 30s, or leave it out for the worker's default", j.Timeout)
	case j.Timeout%time.Millisecond != 0:
		return fmt.Errorf("timeout %v: use whole milliseconds", j.Timeout)
	case j.Partitions < 0:
		return fmt.Errorf("partitions %d is negative; use 1 or more", j.Partitions)
	}
	switch j.Missed {
	case "":
		j.Missed = MissedSkip
	case MissedSkip, MissedOnce, MissedCatchUp:
	default:
		return fmt.Errorf("missed %q: use skip, once or catchup", j.Missed)
	}
	s, err := ParseSchedule(j.Schedule)
	if err != nil {
		return err
	}
	j.sched = s
	return nil
}

// Next returns the job's first fire time strictly after t, in UTC, or the
// zero time when there is none within five years. The job must have passed
// Check.
func (j *Job) Next(t time.Time) time.Time { return j.sched.Next(t) }

// LineError is a problem with a job file, at a line.
type LineError struct {
	File string
	Line int
	// Job names the job, when the problem is in one.
	Job string
	Err error
}

func (e *LineError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Job != "" {
		fmt.Fprintf(&b, "job %q: ", e.Job)
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *LineError) Unwrap() error { return e.Err }

// Load reads and checks the job file at path; see Parse.
func Load(path string) ([]Job, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read job file: %w", err)
	}
	return Parse(path, data)
}

// fields are the keys a job may have, in the order the docs give them.
var fields = []string{"name", "schedule", "topic", "command", "payload", "max_attempts", "timeout", "missed", "partitions"}

// Parse reads a job file, YAML of the form
//
//	jobs:
//	  - name: nightly-export
//	    schedule: "CRON_TZ=Europe/Paris 0 3 * * *"
//	    topic: jobs
//	    command: ./export.sh      # or payload: {any YAML, sent as JSON}
//	    max_attempts: 3           # 0 or absent: the worker's default
//	    timeout: 10m              # absent: the worker's default
//	    missed: skip              # skip (default), once or catchup
//	    partitions: 3             # when the topic is created; absent: the default
//
// and checks every job. file names the file in errors. The error joins one
// *LineError per problem found, each naming the file and line.
func Parse(file string, data []byte) ([]Job, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(file, err)
	}
	p := &jobParser{file: file}
	jobs := p.root(&root)
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return jobs, nil
}

type jobParser struct {
	file string
	errs []error
}

func (p *jobParser) fail(line int, job string, format string, args ...any) {
	p.errs = append(p.errs, &LineError{File: p.file, Line: line, Job: job, Err: fmt.Errorf(format, args...)})
}

func (p *jobParser) root(doc *yaml.Node) []Job {
	if doc.Kind == 0 || len(doc.Content) == 0 {
		p.fail(0, "", "the file is empty; it needs a list of jobs under \"jobs:\"")
		return nil
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		p.fail(top.Line, "", "the file must be a mapping with a \"jobs:\" list")
		return nil
	}
	var list *yaml.Node
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		if k.Value != "jobs" {
			p.fail(k.Line, "", "unknown field %q at the top; the file has one field, \"jobs\"", k.Value)
			continue
		}
		list = v
	}
	if list == nil {
		if len(p.errs) == 0 {
			p.fail(top.Line, "", "no \"jobs:\" list")
		}
		return nil
	}
	if list.Kind != yaml.SequenceNode {
		p.fail(list.Line, "", "\"jobs\" must be a list of jobs, each starting with \"- name: ...\"")
		return nil
	}
	var jobs []Job
	names := map[string]int{}
	topics := map[string]*Job{}
	for _, n := range list.Content {
		j, ok := p.job(n)
		if !ok {
			continue
		}
		if first, dup := names[j.Name]; dup {
			p.fail(j.Line, j.Name, "the name is used again (first at line %d); names must be unique: they key the job's records and dedupe ids", first)
			continue
		}
		names[j.Name] = j.Line
		if j.Partitions > 0 {
			if o := topics[j.Topic]; o != nil && o.Partitions != j.Partitions {
				p.fail(j.Line, j.Name, "partitions %d for topic %q, but job %q (line %d) says %d; give one count per topic",
					j.Partitions, j.Topic, o.Name, o.Line, o.Partitions)
				continue
			}
			topics[j.Topic] = &j
		}
		jobs = append(jobs, j)
	}
	if len(jobs) == 0 && len(p.errs) == 0 {
		p.fail(list.Line, "", "the \"jobs\" list is empty")
	}
	return jobs
}

// job reads one entry of the jobs list.
func (p *jobParser) job(n *yaml.Node) (Job, bool) {
	j := Job{Line: n.Line}
	if n.Kind != yaml.MappingNode {
		p.fail(n.Line, "", "a job must be a mapping such as \"- name: backup\"")
		return j, false
	}
	// The name first, so that every other error can name the job.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "name" && n.Content[i+1].Kind == yaml.ScalarNode {
			j.Name = n.Content[i+1].Value
		}
	}
	before := len(p.errs)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if first, dup := seen[k.Value]; dup {
			p.fail(k.Line, j.Name, "field %q is given twice (first at line %d)", k.Value, first)
			continue
		}
		seen[k.Value] = k.Line
		if err := setField(&j, k.Value, v); err != nil {
			p.fail(v.Line, j.Name, "%v", err)
		}
	}
	if len(p.errs) > before {
		return j, false
	}
	if err := j.Check(); err != nil {
		p.fail(j.Line, j.Name, "%v", err)
		return j, false
	}
	return j, true
}

func setField(j *Job, key string, v *yaml.Node) error {
	scalar := func() (string, error) {
		if v.Kind != yaml.ScalarNode {
			return "", fmt.Errorf("%s must be a single value, not a list or mapping", key)
		}
		return v.Value, nil
	}
	integer := func() (int, error) {
		s, err := scalar()
		if err != nil {
			return 0, err
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return 0, fmt.Errorf("%s %q is not a whole number", key, s)
		}
		return n, nil
	}
	var err error
	switch key {
	case "name":
		j.Name, err = scalar()
	case "schedule":
		j.Schedule, err = scalar()
		if err == nil {
			_, err = ParseSchedule(j.Schedule)
		}
	case "topic":
		j.Topic, err = scalar()
	case "command":
		j.Command, err = scalar()
		if err == nil && strings.TrimSpace(j.Command) == "" {
			err = errors.New("command is empty; give a shell command, or use payload")
		}
	case "payload":
		j.Payload, err = payloadJSON(v)
	case "max_attempts":
		j.MaxAttempts, err = integer()
	case "partitions":
		j.Partitions, err = integer()
		if err == nil && j.Partitions < 1 {
			err = fmt.Errorf("partitions %d: use 1 or more", j.Partitions)
		}
	case "timeout":
		var s string
		if s, err = scalar(); err == nil {
			if j.Timeout, err = time.ParseDuration(s); err != nil {
				if _, nerr := strconv.Atoi(s); nerr == nil {
					err = fmt.Errorf("timeout %s has no unit; write it as %ss or %sm", s, s, s)
				} else {
					err = fmt.Errorf("timeout %q is not a duration; write one such as 30s or 5m", s)
				}
			} else if j.Timeout <= 0 {
				err = fmt.Errorf("timeout %s: use a positive duration, or leave it out for the worker's default", s)
			}
		}
	case "missed":
		var s string
		if s, err = scalar(); err == nil {
			j.Missed = Missed(s)
			if j.Missed != MissedSkip && j.Missed != MissedOnce && j.Missed != MissedCatchUp {
				err = fmt.Errorf("missed %q: use skip, once or catchup", s)
			}
		}
	default:
		err = fmt.Errorf("unknown field %q%s; a job has %s", key, suggest(key), strings.Join(fields, ", "))
	}
	return err
}

// payloadJSON converts a YAML payload to JSON.
func payloadJSON(v *yaml.Node) (json.RawMessage, error) {
	var x any
	if err := v.Decode(&x); err != nil {
		return nil, fmt.Errorf("payload: %v", err)
	}
	x, err := jsonable(x)
	if err != nil {
		return nil, fmt.Errorf("payload: %v", err)
	}
	b, err := json.Marshal(x)
	if err != nil {
		return nil, fmt.Errorf("payload cannot be written as JSON: %v", err)
	}
	if bytes.Equal(b, []byte("null")) {
		return nil, errors.New("payload is empty; give a value, or use command")
	}
	return b, nil
}

// jsonable turns the maps YAML decodes with non-string keys into JSON
// objects, or says which key cannot be one.
func jsonable(x any) (any, error) {
	switch x := x.(type) {
	case map[string]any:
		for k, v := range x {
			v, err := jsonable(v)
			if err != nil {
				return nil, err
			}
			x[k] = v
		}
		return x, nil
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, v := range x {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("key %v is not a string; JSON objects have string keys, so quote it", k)
			}
			v, err := jsonable(v)
			if err != nil {
				return nil, err
			}
			m[ks] = v
		}
		return m, nil
	case []any:
		for i, v := range x {
			v, err := jsonable(v)
			if err != nil {
				return nil, err
			}
			x[i] = v
		}
		return x, nil
	}
	return x, nil
}

// suggest returns ` (did you mean "x"?)` for the known field closest to
// key, when one is close.
func suggest(key string) string {
	best, bestD := "", 3
	for _, f := range fields {
		if d := distance(strings.ToLower(key), f); d < bestD {
			best, bestD = f, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError turns a YAML syntax error into a *LineError.
func yamlError(file string, err error) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		hint := ""
		if strings.Contains(m[2], "cannot start any token") || strings.Contains(m[2], "expected alphabetic or numeric character") {
			// @ and * are YAML indicators: an unquoted "@hourly" or
			// "*/5 * * * *" is not a string.
			hint = `; quote a schedule that starts with @ or *, as schedule: "@hourly"`
		}
		return &LineError{File: file, Line: line, Err: fmt.Errorf("not valid YAML: %s%s", m[2], hint)}
	}
	return &LineError{File: file, Err: fmt.Errorf("not valid YAML: %s", strings.TrimPrefix(msg, "yaml: "))}
}
