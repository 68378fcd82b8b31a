package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// maxRecvMsgSize is the largest gRPC message the client accepts: fetch
// responses carry up to FetchMaxBytes plus one batch, and a batch is
// bounded by the broker's max.message.bytes.
const maxRecvMsgSize = 64 << 20

// Client talks to a runnel cluster: it produces, consumes and administers
// topics. It is safe for concurrent use. Close it when done.
type Client struct {
	cfg config

	// ctx lives as long as the client; Close cancels it, ending every
	// goroutine the client owns, which wg waits for.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	connMu sync.Mutex
	conns  map[string]*grpc.ClientConn // by address

	meta metadata
	prod producer
	// groupsCoord is the address of the group coordinator that answered
	// last (a string), tried first by group calls.
	groupsCoord atomic.Value
	// commits sends offset commits over a stream per broker.
	commits commitStreams
}

// New returns a client for the cluster named by the Brokers option. It
// dials lazily, so New does not fail when no broker is up yet; the first
// call that needs one does.
func New(ctx context.Context, opts ...Option) (*Client, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, conns: make(map[string]*grpc.ClientConn)}
	// The client's lifetime is its own; ctx only bounds New.
	c.ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	c.meta.init(c)
	c.prod.init(c)
	c.commits.c = c
	c.goFunc(c.meta.loop)
	return c, nil
}

// goFunc runs f on a goroutine the client waits for on Close.
func (c *Client) goFunc(f func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
}

// Close flushes buffered records (waiting up to DeliveryTimeout), fails
// what is left with ErrClosed, and closes the connections. It waits for
// every goroutine of the client to end.
func (c *Client) Close() error {
	if c.ctx.Err() != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.deliveryTimeout)
	flushErr := c.Flush(ctx)
	cancel()
	c.cancel()
	c.prod.close()
	c.commits.close()
	c.wg.Wait()
	c.connMu.Lock()
	var errs []error
	for _, cc := range c.conns {
		errs = append(errs, cc.Close())
	}
	c.conns = nil
	c.connMu.Unlock()
	if flushErr != nil {
		return fmt.Errorf("close: %w", flushErr)
	}
	return errors.Join(errs...)
}

// conn returns the connection to addr, creating it on first use.
func (c *Client) conn(addr string) (runnelpb.BrokerClient, error) {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	if c.conns == nil {
		return nil, ErrClosed
	}
	if cc, ok := c.conns[addr]; ok {
		return runnelpb.NewBrokerClient(cc), nil
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsgSize)),
		grpc.WithConnectParams(connectParams),
	}
	if c.cfg.dial != nil {
		opts = append(opts, grpc.WithContextDialer(c.cfg.dial))
	}
	// passthrough: the address goes to the dialer as is, with no name
	// resolution of its own; the default dialer resolves host names.
	cc, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	c.conns[addr] = cc
	return runnelpb.NewBrokerClient(cc), nil
}

// connectParams bound how long the client waits for a connection and how
// long it waits between attempts to a broker it cannot reach. gRPC's
// defaults (20 s to connect, backoff growing to 120 s) would leave a broker
// that restarted unreachable for minutes, and a broker that accepts
// connections before it serves (as a node does while it starts) would hold
// a stream's open for 20 s. The backoff matches Kafka's
// reconnect.backoff.max.ms.
var connectParams = grpc.ConnectParams{
	Backoff: backoff.Config{
		BaseDelay:  100 * time.Millisecond,
		Multiplier: 1.6,
		Jitter:     0.2,
		MaxDelay:   time.Second,
	},
	MinConnectTimeout: 5 * time.Second,
}

// call runs one unary call against the brokers in turn, starting with the
// one at addr when addr is set, until one answers. A broker that cannot be
// reached is skipped, and so is one that answers it has no leader yet, is
// catching up or is shutting down; any other answer, error or not, ends the
// loop. A NOT_LEADER answer is followed once to the leader it names. When
// brokers answered only that they cannot serve yet, the call is tried
// again after a backoff while ctx lasts; when ctx has no deadline, retries
// stop after RequestTimeout.
func (c *Client) call(ctx context.Context, addr string, f func(ctx context.Context, b runnelpb.BrokerClient) error) error {
	start := time.Now()
	_, bounded := ctx.Deadline()
	var last error // the last answer that was waited out
	for attempt := 1; ; attempt++ {
		later, err := c.callOnce(ctx, addr, f)
		if !later && last != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
			// The context ended during a retry: say what was waited for.
			return fmt.Errorf("%w (last error: %w)", err, last)
		}
		if !later || (!bounded && time.Since(start) >= c.cfg.requestTimeout) {
			return err
		}
		last = err
		delay := c.prod.backoff(attempt)
		c.cfg.logger.Debug("runnel client: retrying call", "attempt", attempt, "delay", delay, "err", err)
		if serr := c.sleep(ctx, delay); serr != nil {
			return fmt.Errorf("%w (last error: %w)", serr, err)
		}
	}
}

// callLeader runs one unary call about topic/partition on the partition's
// leader: the cached one first, then as call does. A NOT_LEADER answer's
// hint goes into the cache, and call follows it at once. While leadership
// moves (the node named answers NOT_LEADER too, or no leader is known yet),
// the call is tried again after a backoff, with the metadata refreshed,
// while ctx lasts; when ctx has no deadline, for up to RequestTimeout.
func (c *Client) callLeader(ctx context.Context, topic string, partition int32, f func(ctx context.Context, b runnelpb.BrokerClient) error) error {
	start := time.Now()
	_, bounded := ctx.Deadline()
	for attempt := 1; ; attempt++ {
		addr, err := c.meta.leaderFresh(ctx, topic, partition)
		if err == nil {
			err = c.call(ctx, addr, func(ctx context.Context, b runnelpb.BrokerClient) error {
				err := f(ctx, b)
				var nl *NotLeaderError
				if errors.As(fromStatus(err, addr), &nl) {
					c.meta.follow(topic, partition, nl)
				}
				return err
			})
		}
		var nl *NotLeaderError
		if !errors.As(err, &nl) && !retryLater(err) {
			return err
		}
		if !bounded && time.Since(start) >= c.cfg.requestTimeout {
			return err
		}
		c.meta.refresh()
		delay := c.prod.backoff(attempt)
		c.cfg.logger.Debug("runnel client: retrying call on the partition leader", "topic", topic, "partition", partition, "attempt", attempt, "delay", delay, "err", err)
		if serr := c.sleep(ctx, delay); serr != nil {
			return fmt.Errorf("%w (last error: %w)", serr, err)
		}
	}
}

// callOnce is one pass of call over the brokers. later reports that the
// error is an answer worth waiting out (see retryLater).
func (c *Client) callOnce(ctx context.Context, addr string, f func(ctx context.Context, b runnelpb.BrokerClient) error) (later bool, err error) {
	addrs := c.meta.brokerAddrs()
	if addr != "" {
		addrs = append([]string{addr}, addrs...)
	}
	var lastErr error
	tried := make(map[string]bool, len(addrs))
	followed := false
	for i := 0; i < len(addrs); i++ {
		a := addrs[i]
		if tried[a] {
			continue
		}
		tried[a] = true
		b, err := c.conn(a)
		if err != nil {
			return false, err
		}
		cctx, cancel := context.WithTimeout(ctx, c.cfg.requestTimeout)
		err = fromStatus(f(cctx, b), a)
		cancel()
		if ctxErr := ctx.Err(); ctxErr != nil && err != nil {
			return false, ctxErr
		}
		var nl *NotLeaderError
		switch {
		case err == nil:
			c.meta.reachable(a)
			return false, nil
		case errors.As(err, &nl) && nl.LeaderAddr != "" && !followed && !tried[nl.LeaderAddr]:
			followed = true
			addrs = append(addrs[:i+1], append([]string{nl.LeaderAddr}, addrs[i+1:]...)...)
			lastErr = err
		case retryLater(err):
			lastErr, later = err, true
		case isConnectError(err):
			if !later {
				lastErr = err
			}
		default:
			return false, err
		}
	}
	return later, lastErr
}

func isConnectError(err error) bool {
	var ce *ConnectError
	return errors.As(err, &ce)
}

// sleep waits for d, or until ctx or the client ends.
func (c *Client) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return ErrClosed
	}
}
