package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"
	_ "time/tzdata" // CRON_TZ= zones work on machines without a zone database

	"github.com/spf13/cobra"

	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/client/cron"
)

func cronCmd() *cobra.Command {
	var (
		f          clientFlags
		jobsFile   string
		httpAddr   string
		partitions int
		replicas   int
		grace      time.Duration
		lookback   time.Duration
		drain      time.Duration
		logLevel   string
		producers  int
	)
	cmd := &cobra.Command{
		Use:   "cron --jobs FILE",
		Short: "Publish jobs on cron schedules (client/cron)",
		Long: `Publish the jobs of a YAML job file to their topics on their schedules:

  jobs:
    - name: nightly-export
      schedule: "CRON_TZ=Europe/Paris 0 3 * * *"   # 5 or 6 fields, @daily, @every 10m
      topic: jobs
      command: ./export.sh        # or payload: {any YAML, sent as JSON}
      max_attempts: 3             # absent: the worker's default
      timeout: 10m                # absent: the worker's default
      missed: skip                # skip (default), once or catchup
      partitions: 3               # when cron creates the topic

Each fire is a record keyed by the job's name whose value is the job (JSON)
and whose runnel-msg-id header is "<name>@<scheduled time>": run several
instances with the same file and each fire is written once.
Topics that do not exist are created at start. Schedules without CRON_TZ=
are in UTC. SIGTERM or SIGINT stops after the publishes under way.
"runnel cron next --jobs FILE" lists the next fires.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if jobsFile == "" {
				return errors.New("--jobs FILE is required: the YAML job file (see runnel cron --help)")
			}
			if producers < 1 {
				return fmt.Errorf("--producers %d: use 1 or more", producers)
			}
			logger, err := newLogger(cmd.ErrOrStderr(), logLevel)
			if err != nil {
				return err
			}
			jobs, err := cron.Load(jobsFile)
			if err != nil {
				return explain(err)
			}
			reg := newRegistry()

			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			if httpAddr != "" {
				srv, err := serveMetricsHTTP(httpAddr, reg, logger)
				if err != nil {
					return err
				}
				defer srv.Close()
			}
			c, err := f.newClient(ctx, client.Acks(client.AcksAll), client.Logger(logger))
			if err != nil {
				return explain(err)
			}
			defer c.Close()
			var extra []*client.Client
			for range producers - 1 {
				ec, err := f.newClient(ctx, client.Acks(client.AcksAll), client.Logger(logger))
				if err != nil {
					return explain(err)
				}
				defer ec.Close()
				extra = append(extra, ec)
			}
			cr, err := cron.New(c, jobs, cron.Options{
				Partitions: partitions, Replicas: replicas, Grace: grace, Lookback: lookback,
				DrainTimeout: drain, Registerer: reg, Logger: logger, ExtraClients: extra,
			})
			if err != nil {
				return err
			}
			logger.Info("runnel cron: started", "jobs", len(jobs), "file", jobsFile, "brokers", f.brokers)
			if err := cr.Run(ctx); err != nil {
				return explain(err)
			}
			logger.Info("runnel cron: stopped")
			return nil
		},
	}
	fl := cmd.Flags()
	f.addBrokersFlag(cmd)
	fl.StringVar(&jobsFile, "jobs", "", "the YAML job file")
	fl.StringVar(&httpAddr, "http", "", "HTTP listen address for /metrics and /livez (off when empty)")
	fl.IntVar(&partitions, "partitions", 1, "partitions of a topic cron creates for jobs that set none")
	fl.IntVar(&replicas, "replicas", 0, "replicas of the topics cron creates (0: the broker's default)")
	fl.DurationVar(&grace, "grace", 5*time.Second, "how late a fire may be and still count as on time; later ones follow the job's missed policy")
	fl.DurationVar(&lookback, "lookback", 24*time.Hour, "how far back cron reads the job topics at start for each job's last fire")
	fl.DurationVar(&drain, "drain-timeout", 10*time.Second, "how long to wait for publishes under way at shutdown")
	fl.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fl.IntVar(&producers, "producers", 4, "clients publishing in parallel: fires due together on one partition are published one at a time per client")
	cmd.AddCommand(cronNextCmd())
	return cmd
}

// fireJSON is one line of `runnel cron next --format json`.
type fireJSON struct {
	Job         string    `json:"job"`
	Topic       string    `json:"topic"`
	ScheduledAt time.Time `json:"scheduled_at"`
	ID          string    `json:"id"`
}

func cronNextCmd() *cobra.Command {
	var (
		f        clientFlags
		jobsFile string
		count    int
		from     string
	)
	cmd := &cobra.Command{
		Use:   "next --jobs FILE",
		Short: "Check a job file and list the next fires of its jobs",
		Long: `Check a job file and list the next --count fires of each job, merged in
time order, in UTC. Needs no broker. Exits 1 with every problem of the file,
each with its line (separated by "; "), when the file is not valid.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.checkFormat("table", "json"); err != nil {
				return err
			}
			if jobsFile == "" {
				return errors.New("--jobs FILE is required: the YAML job file")
			}
			if count < 1 {
				return fmt.Errorf("--count %d: use 1 or more", count)
			}
			start := time.Now()
			if from != "" {
				t, err := time.Parse(time.RFC3339, from)
				if err != nil {
					return fmt.Errorf("--from %q: use an RFC 3339 time such as 2026-01-02T15:04:05Z", from)
				}
				start = t
			}
			jobs, err := cron.Load(jobsFile)
			if err != nil {
				return explain(err)
			}
			fires := cron.Upcoming(jobs, start, count)
			out := cmd.OutOrStdout()
			if f.format == "json" {
				list := make([]fireJSON, 0, len(fires))
				for _, fi := range fires {
					list = append(list, fireJSON{Job: fi.Job.Name, Topic: fi.Job.Topic, ScheduledAt: fi.At, ID: fi.ID()})
				}
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(list)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "SCHEDULED (UTC)\tIN\tJOB\tTOPIC")
			for _, fi := range fires {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", fi.At.Format(time.RFC3339), fi.At.Sub(start).Round(time.Second), fi.Job.Name, fi.Job.Topic)
			}
			return tw.Flush()
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&jobsFile, "jobs", "", "the YAML job file")
	fl.IntVar(&count, "count", 5, "fires to list per job")
	fl.StringVar(&from, "from", "", "list the fires after this RFC 3339 time instead of now")
	f.addFormatFlag(cmd, "table", "json")
	return cmd
}
