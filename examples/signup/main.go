// Command signup runs a sign-up flow as pipeline stages over runnel topics,
// after the event-driven chapter of Burns' Designing Distributed Systems:
// new users are sharded by region and each shard's stage sends a
// verification email; a verification is copied to a welcome email and to
// notification setup; notification setup is split into email and SMS. The
// senders are fakes that record what they sent; it prints their outboxes.
//
//	go run ./examples/signup                       # an embedded broker
//	go run ./examples/signup -brokers 127.0.0.1:7070
//
// See README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/runnel-dev/runnel/broker"
	"github.com/runnel-dev/runnel/client"
	"github.com/runnel-dev/runnel/client/pipeline"
)

func main() {
	brokers := flag.String("brokers", "", "a running cluster, HOST:PORT,... (default: an embedded broker in a temporary folder)")
	shards := flag.Int("shards", 4, "shards of new users")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	flow := Flow{Shards: *shards, Senders: NewSenders()}
	if err := run(ctx, config{brokers: *brokers, flow: flow, users: demoUsers, out: os.Stdout}); err != nil {
		fmt.Fprintln(os.Stderr, "signup:", err)
		os.Exit(1)
	}
}

var demoUsers = []User{
	{ID: "u1", Name: "Ana", Email: "ana@example.com", Region: "eu", Notify: "email"},
	{ID: "u2", Name: "Bo", Email: "bo@example.com", Phone: "+1 555 0102", Region: "us", Notify: "sms"},
	{ID: "u3", Name: "Chen", Email: "chen@example.com", Phone: "+86 555 0103", Region: "ap", Notify: "sms"},
	{ID: "u4", Name: "Dara", Email: "dara@example.com", Region: "eu", Notify: "email"},
	{ID: "u5", Name: "Eli", Email: "eli@example.com", Phone: "+1 555 0105", Region: "us", Notify: "email"},
	{ID: "u6", Name: "Femi", Email: "femi@example.com", Phone: "+44 555 0106", Region: "eu", Notify: "sms"},
}

type config struct {
	brokers string
	flow    Flow
	users   []User
	out     io.Writer
	// wrap, when set, replaces each stage before it starts (tests).
	wrap func(Stage) Stage
}

// run creates the flow's topics, starts its stages, signs users up, waits
// for their verification emails, verifies them all, waits for their
// welcome messages and notices, and prints the outboxes to out.
func run(ctx context.Context, cfg config) error {
	flow, users, out := cfg.flow, cfg.users, cfg.out
	c, closeBroker, err := connect(ctx, cfg.brokers)
	if err != nil {
		return err
	}
	defer closeBroker()
	defer c.Close()
	for _, t := range flow.Topics() {
		if _, err := c.EnsureTopic(ctx, t, 2, 0); err != nil {
			return fmt.Errorf("create topic %s: %w", t, err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ss := flow.Stages()
	if cfg.wrap != nil {
		for i := range ss {
			ss[i] = cfg.wrap(ss[i])
		}
	}
	running := startStages(ctx, c, ss, slog.New(slog.NewTextHandler(os.Stderr, nil)))

	wait := func(o *Outbox, n int) error {
		if err := o.WaitFor(ctx, n); err != nil {
			if last := running.lastErr(); last != nil {
				return fmt.Errorf("%w (the last stage failure: %w)", err, last)
			}
			return err
		}
		return nil
	}
	var recs []*client.Record
	sms := 0
	for _, u := range users {
		recs = append(recs, UserRecord(signupsTopic, u))
		if u.Notify == "sms" {
			sms++
		}
	}
	if err := c.ProduceSync(ctx, recs...); err != nil {
		return fmt.Errorf("sign up: %w", err)
	}
	if err := wait(flow.Senders.Verification, len(users)); err != nil {
		return fmt.Errorf("verification emails: %w", err)
	}
	// Every user follows the link in their email.
	recs = recs[:0]
	for _, u := range users {
		recs = append(recs, UserRecord(verifiedTopic, u))
	}
	if err := c.ProduceSync(ctx, recs...); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	for _, w := range []struct {
		o *Outbox
		n int
	}{{flow.Senders.Welcome, len(users)}, {flow.Senders.NotifyEmail, len(users) - sms}, {flow.Senders.NotifySMS, sms}} {
		if err := wait(w.o, w.n); err != nil {
			return err
		}
	}
	cancel()
	running.wg.Wait()
	for _, o := range []struct {
		name string
		o    *Outbox
	}{{"verification", flow.Senders.Verification}, {"welcome", flow.Senders.Welcome}, {"notice by email", flow.Senders.NotifyEmail}, {"notice by SMS", flow.Senders.NotifySMS}} {
		fmt.Fprintf(out, "%s:\n", o.name)
		for _, m := range o.o.Sent() {
			fmt.Fprintf(out, "  %-5s %-18s %-22s %s\n", m.Channel, m.To, m.By, m.Text)
		}
	}
	return nil
}

// stages are running stages.
type stages struct {
	wg   sync.WaitGroup
	mu   sync.Mutex
	last error
}

// startStages runs each stage in a goroutine until ctx ends. A stage that
// fails is logged and started again after restartDelay: it reads again
// from its group's last commit, and the senders' idempotency keys drop
// the messages it sends again.
func startStages(ctx context.Context, c *client.Client, ss []Stage, logger *slog.Logger) *stages {
	s := &stages{}
	for _, st := range ss {
		s.wg.Go(func() {
			for {
				err := pipeline.Run(ctx, c, st.Group, st.Inputs, st.Func)
				if err == nil || ctx.Err() != nil {
					return
				}
				logger.Warn("stage failed; restarting", "stage", st.Group, "err", err)
				s.mu.Lock()
				s.last = fmt.Errorf("stage %s: %w", st.Group, err)
				s.mu.Unlock()
				select {
				case <-ctx.Done():
					return
				case <-time.After(restartDelay):
				}
			}
		})
	}
	return s
}

// restartDelay is how long a failed stage waits before it starts again.
const restartDelay = 200 * time.Millisecond

// lastErr returns the last stage failure, or nil.
func (s *stages) lastErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// connect returns a client of the cluster at brokers, or of a broker it
// opens in a temporary folder, and a function that closes that broker.
func connect(ctx context.Context, brokers string) (*client.Client, func(), error) {
	if brokers != "" {
		c, err := client.New(ctx, client.Brokers(brokers))
		return c, func() {}, err
	}
	dir, err := os.MkdirTemp("", "signup-")
	if err != nil {
		return nil, nil, err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	b, err := broker.Open(dir, broker.Options{Logger: logger, NoSync: true})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	closeBroker := func() { b.Close(); os.RemoveAll(dir) }
	c, err := client.New(ctx, client.Brokers(b.Addr()), client.Dialer(b.DialContext))
	if err != nil {
		closeBroker()
		return nil, nil, err
	}
	return c, closeBroker, nil
}
