package cron_test

import (
	"fmt"
	"time"

	"github.com/runnel-dev/runnel/client/cron"
)

func ExampleParse() {
	jobs, err := cron.Parse("jobs.yaml", []byte(`
jobs:
  - name: nightly-export
    schedule: "CRON_TZ=Europe/Paris 0 3 * * *"
    topic: jobs
    command: ./export.sh
    max_attempts: 3
    timeout: 10m
    missed: once
  - name: heartbeat
    schedule: "@every 30s"
    topic: jobs
    payload: {ping: true}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	from := time.Date(2026, 7, 1, 0, 59, 0, 0, time.UTC)
	for _, f := range cron.Upcoming(jobs, from, 2) {
		fmt.Println(f.At.Format(time.RFC3339), f.Job.Name, f.ID())
	}
	// Output:
	// 2026-07-01T00:59:30Z heartbeat heartbeat@2026-07-01T00:59:30Z
	// 2026-07-01T01:00:00Z heartbeat heartbeat@2026-07-01T01:00:00Z
	// 2026-07-01T01:00:00Z nightly-export nightly-export@2026-07-01T01:00:00Z
	// 2026-07-02T01:00:00Z nightly-export nightly-export@2026-07-02T01:00:00Z
}

func ExampleParse_errors() {
	_, err := cron.Parse("jobs.yaml", []byte(`
jobs:
  - name: backup
    schedule: "0 3 * *"
    topic: jobs
    command: ./backup.sh
    retries: 3
`))
	fmt.Println(err)
	// Output:
	// jobs.yaml:4: job "backup": schedule "0 3 * *": expected 5 to 6 fields, found 4: [0 3 * *]; use 5 fields "MIN HOUR DOM MON DOW", 6 with seconds first, a descriptor (@yearly, @monthly, @weekly, @daily, @hourly), "@every 30s", optionally prefixed by "CRON_TZ=Area/City "
	// jobs.yaml:7: job "backup": unknown field "retries"; a job has name, schedule, topic, command, payload, max_attempts, timeout, missed, partitions
}
