package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/client/worker"
)

// errMailboxFull stands for a failure that passes with time.
var errMailboxFull = errors.New("mailbox full")

// sendWelcome stands for the work a job does.
func sendWelcome(ctx context.Context, to string) error { return nil }

// A worker with a Go handler: jobs whose payload is {"email": ...} send a
// welcome mail, on four goroutines, until SIGTERM.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	c, err := client.New(ctx, client.Brokers("127.0.0.1:7070"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	q, err := c.Queue("mailers", "signups", client.QueueOptions{Visibility: time.Minute, Prefetch: 4}) // Concurrency
	if err != nil {
		fmt.Println(err)
		return
	}
	defer q.Close() // after Run: releases the jobs a drain stopped

	handle := func(ctx context.Context, j *worker.Job) error {
		var p struct{ Email string }
		if err := json.Unmarshal(j.Payload, &p); err != nil || p.Email == "" {
			return worker.Permanent(fmt.Errorf("payload %s has no email", j.Payload))
		}
		if err := sendWelcome(ctx, p.Email); errors.Is(err, errMailboxFull) {
			return worker.RetryAfter(time.Hour, err)
		} else if err != nil {
			return err // retried with backoff, dead-lettered after the last attempt
		}
		return nil
	}
	w, err := worker.New(q, handle, worker.Options{
		Concurrency: 4, // Visibility: the queue's
		Results:     c, ResultsTopic: "signups.results",
		Registerer: prometheus.DefaultRegisterer,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := w.Run(ctx); err != nil {
		fmt.Println(err)
	}
}

// A worker that runs each job's command, as `runnel worker --exec` does.
func ExampleExec() {
	ctx := context.Background()
	c, err := client.New(ctx, client.Brokers("127.0.0.1:7070"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	q, err := c.Queue("workers", "jobs", client.QueueOptions{Prefetch: 2}) // Concurrency
	if err != nil {
		fmt.Println(err)
		return
	}
	defer q.Close()
	w, err := worker.New(q, worker.Exec(worker.ExecOptions{KillGrace: 10 * time.Second}), worker.Options{
		Concurrency: 2,
		Timeout:     5 * time.Minute, // for jobs without timeout_ms
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := w.Run(ctx); err != nil {
		fmt.Println(err)
	}
}
