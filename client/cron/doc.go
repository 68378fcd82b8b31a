// Package cron publishes jobs to runnel topics on cron schedules: the
// producer half of runnel's task-queue layer (client/worker is the other).
//
//	jobs, err := cron.Load("jobs.yaml")
//	...
//	cr, err := cron.New(c, jobs, cron.Options{Registerer: prometheus.DefaultRegisterer})
//	...
//	err = cr.Run(ctx) // until ctx ends
//
// # Records
//
// Each fire publishes one record to the job's topic: key the job's name,
// value a job.Job (JSON) with Attempt 1, and header job.MsgIDHeader set to
// the fire's ID, "<name>@<scheduled time, RFC 3339 UTC>". Topics that do not
// exist are created by Run, with the job's partition count or
// Options.Partitions.
//
// # Exactly once with several instances
//
// Any number of cron instances may run the same job file. They compute the
// same fire times (schedules without CRON_TZ= are read in UTC, and @every
// counts from the Unix epoch), so they publish records with the same IDs,
// and a partition writes a record whose ID it saw within its dedupe window
// (two minutes by default) only once. That is what makes a fire published
// once however many instances run, on a single node (runnel serve) as on a
// cluster (runnel dev, or runnel serve with --cluster).
//
// The broker treats a batch as a duplicate only when every ID in it is
// known, so Cron sends each record alone in its batch: a client publishes
// the fires of one partition one at a time. Partitions are published in
// parallel, and with Options.ExtraClients so are the jobs of one partition
// (each job always through the same client).
//
// # Missed fires
//
// A fire is missed when its time passed while no instance ran, or while
// this one was more than Options.Grace late. Each job's Missed policy says
// what to do: MissedSkip drops missed fires (counted as skipped),
// MissedOnce publishes one job for the latest of them, MissedCatchUp
// publishes each (at most MaxCatchUp, the latest). To know what was missed
// across a restart, Run reads each job topic back at start, from
// Options.Lookback ago to its end, and takes each job's latest scheduled
// time from the IDs of its records; that is what the other instances
// published too, so no state of its own is kept. A job with no record in
// the lookback starts from now. Fires less than Grace late are on time
// whatever the policy: a restart that takes a second or two loses none.
//
// # Metrics
//
// With Options.Registerer: runnel_cron_jobs, runnel_cron_publishes_total{job,
// result} (ok, error, skipped), runnel_cron_schedule_lag_seconds (scheduled
// time to publish start, for fires made on time),
// runnel_cron_publish_seconds (publish start to ack),
// runnel_cron_next_fire_timestamp_seconds{job} and
// runnel_cron_last_publish_timestamp_seconds{job}.
//
// # Concurrency
//
// Run is called once. One goroutine owns the schedules and wakes at each
// fire time; it hands fires to a goroutine per partition with work, which
// publishes them in order. When Run's context ends, it stops firing,
// waits up to Options.DrainTimeout for the fires already handed over, and
// returns. Time comes from Options.Clock, so tests run under
// testing/synctest.
package cron
