package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/runnel-dev/runnel/bench"
)

// jetStreamOptions shape the JetStream driver.
type jetStreamOptions struct {
	// Streams is the number of streams: runnel's partitions map one to
	// one onto streams (see JetStream).
	Streams int
	// Replicas is each stream's replication factor, at most the servers.
	Replicas int
	// MaxPending bounds the publishes awaiting their acks, over all
	// connections. 0 means 4000, the client's default
	// PublishAsyncMaxPending.
	MaxPending int
	// InProcess connects to a single server without a socket, over the
	// server's in-process connection (a net.Pipe); otherwise clients dial
	// the server's loopback port.
	InProcess bool
}

// jetStreamServers are nats-server instances embedded in this process.
type jetStreamServers struct {
	servers []*server.Server
}

// startJetStream starts n servers with JetStream and file storage in
// subfolders of dir. Three servers form one cluster over routes on
// 127.0.0.1, on ports the OS picked moments before.
func startJetStream(ctx context.Context, n int, syncAlways bool, dir string) (*jetStreamServers, error) {
	if n != 1 && n != 3 {
		return nil, fmt.Errorf("jetstream: %d servers; use 1 or 3", n)
	}
	var routes []*url.URL
	var routePorts []int
	if n > 1 {
		ports, err := freePorts(n)
		if err != nil {
			return nil, err
		}
		routePorts = ports
		for _, p := range ports {
			routes = append(routes, &url.URL{Scheme: "nats-route", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(p))})
		}
	}
	js := &jetStreamServers{}
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		opts := &server.Options{
			ServerName: name,
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			NoLog:      true,
			NoSigs:     true,
			JetStream:  true,
			StoreDir:   filepath.Join(dir, name),
			// sync_interval: always. Left unset, the server syncs every
			// two minutes in the background.
			SyncAlways: syncAlways,
		}
		if n > 1 {
			opts.Cluster = server.ClusterOpts{Name: "bench", Host: "127.0.0.1", Port: routePorts[i]}
			// Each server gets the full list; a route to itself is
			// recognised and dropped.
			opts.Routes = routes
		}
		s, err := server.NewServer(opts)
		if err != nil {
			js.shutdown()
			return nil, fmt.Errorf("jetstream server %s: %w", name, err)
		}
		js.servers = append(js.servers, s)
		s.Start()
	}
	for _, s := range js.servers {
		if !s.ReadyForConnections(30 * time.Second) {
			js.shutdown()
			return nil, fmt.Errorf("jetstream server %s not ready within 30s", s.Name())
		}
	}
	if n > 1 {
		// The meta group must have a leader, known to every server,
		// before streams can be created.
		err := waitFor(ctx, 30*time.Second, func() bool {
			leaders := 0
			for _, s := range js.servers {
				if s.JetStreamIsLeader() {
					leaders++
				}
				if !s.JetStreamIsCurrent() {
					return false
				}
			}
			return leaders == 1
		})
		if err != nil {
			js.shutdown()
			return nil, fmt.Errorf("jetstream cluster: no meta leader: %w", err)
		}
	}
	return js, nil
}

// shutdown stops the servers and waits until they have.
func (js *jetStreamServers) shutdown() {
	for _, s := range js.servers {
		s.Shutdown()
	}
	for _, s := range js.servers {
		s.WaitForShutdown()
	}
}

// freePorts returns n distinct loopback ports the OS had free. They are
// free again, for a moment, when it returns.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitFor polls cond every 50ms until it holds, ctx ends or limit passes.
func waitFor(ctx context.Context, limit time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// JetStream is the bench.Driver for NATS JetStream.
//
// Partitions map to streams: partition p is stream BENCH_p with the one
// subject bench.p. A runnel partition is an ordered log with a raft group
// of its own, and the JetStream unit with the same properties is a stream
// (each clustered stream is one raft group with one leader; the subjects
// of one stream share its order, its leader and its store). Mapping P
// partitions to P subjects of one stream would funnel every write through
// one stream leader and one store, so P streams is the comparison that
// gives JetStream the same parallelism runnel gets. With one partition
// both mappings are the same.
//
// Records go round-robin over the streams. Each publish is asynchronous
// (PublishMsgAsync), on the connection to the server that leads the
// stream, as runnel's client sends to each partition's leader; at most
// MaxPending await their acks over all connections, as runnel's one
// client bounds what it buffers. Reads use an ordered consumer (an
// ephemeral, flow-controlled pull consumer without acks), like a runnel
// consumer reading one partition.
type JetStream struct {
	conns   []*nats.Conn
	js      []jetstream.JetStream // by connection
	streams []jsStream
	next    atomic.Uint64
	// slots holds one token per publish awaiting its ack.
	slots chan struct{}

	// stop ends the watch on the context newJetStream was given.
	stop func() bool

	mu      sync.Mutex
	pending map[*nats.Msg]func(error)
}

// jsStream is one stream and the connection index of its leader.
type jsStream struct {
	name, subject string
	conn          int
}

var (
	_ bench.Driver      = (*JetStream)(nil)
	_ bench.GroupReader = (*JetStream)(nil)
)

// newJetStream connects to every server and creates the streams, waiting
// until each has a leader (and, replicated, current followers).
func newJetStream(ctx context.Context, srv *jetStreamServers, o jetStreamOptions) (*JetStream, error) {
	maxPending := o.MaxPending
	if maxPending <= 0 {
		maxPending = 4000
	}
	if o.InProcess && len(srv.servers) > 1 {
		return nil, errors.New("jetstream: an in-process connection reaches one server; a cluster's clients dial")
	}
	d := &JetStream{pending: map[*nats.Msg]func(error){}, slots: make(chan struct{}, maxPending)}
	d.stop = context.AfterFunc(ctx, func() { d.failPending(context.Cause(ctx)) })
	byName := map[string]int{}
	for i, s := range srv.servers {
		url, copts := s.ClientURL(), []nats.Option{nats.MaxReconnects(-1)}
		if o.InProcess {
			url, copts = "", append(copts, nats.InProcessServer(s))
		}
		nc, err := nats.Connect(url, copts...)
		if err != nil {
			d.Close()
			return nil, err
		}
		d.conns = append(d.conns, nc)
		js, err := jetstream.New(nc,
			// No ack timeout, the client's default: it would cost a
			// timer per publish. A run that hangs ends with its context.
			jetstream.WithPublishAsyncMaxPending(maxPending),
			jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, m *nats.Msg, _ *jetstream.PubAck) { d.resolve(m, nil) }),
			jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) { d.resolve(m, err) }))
		if err != nil {
			d.Close()
			return nil, err
		}
		d.js = append(d.js, js)
		byName[s.Name()] = i
	}
	replicas := o.Replicas
	for p := range o.Streams {
		st := jsStream{name: fmt.Sprintf("BENCH_%d", p), subject: fmt.Sprintf("bench.%d", p)}
		cfg := jetstream.StreamConfig{
			Name:     st.name,
			Subjects: []string{st.subject},
			Storage:  jetstream.FileStorage,
			Replicas: replicas,
		}
		var leader string
		err := waitFor(ctx, 30*time.Second, func() bool {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			s, err := d.js[0].CreateOrUpdateStream(cctx, cfg)
			if err != nil {
				return false
			}
			info, err := s.Info(cctx)
			if err != nil || info.Cluster == nil && replicas > 1 {
				return false
			}
			if info.Cluster != nil {
				leader = info.Cluster.Leader
				if leader == "" || len(info.Cluster.Replicas) != replicas-1 {
					return false
				}
				for _, r := range info.Cluster.Replicas {
					if !r.Current {
						return false
					}
				}
			}
			return true
		})
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("jetstream: stream %s not ready: %w", st.name, err)
		}
		st.conn = byName[leader] // 0 for a single server
		d.streams = append(d.streams, st)
	}
	return d, nil
}

// Close closes the connections; records still awaiting acks fail.
func (d *JetStream) Close() {
	d.stop()
	for _, nc := range d.conns {
		nc.Close()
	}
	d.failPending(nats.ErrConnectionClosed)
}

// failPending fails every publish still awaiting its ack, so that a run
// whose context ended (or a stalled server) does not wait for them.
func (d *JetStream) failPending(err error) {
	d.mu.Lock()
	pending := d.pending
	d.pending = map[*nats.Msg]func(error){}
	d.mu.Unlock()
	for range pending {
		<-d.slots
	}
	for _, done := range pending {
		done(err)
	}
}

// resolve calls the done of an acknowledged or failed publish.
func (d *JetStream) resolve(m *nats.Msg, err error) {
	d.mu.Lock()
	done, ok := d.pending[m]
	delete(d.pending, m)
	d.mu.Unlock()
	if ok {
		<-d.slots
		done(err)
	}
}

// Produce publishes value to the next stream, waiting while MaxPending
// publishes await their acks.
func (d *JetStream) Produce(ctx context.Context, value []byte, done func(error)) {
	select {
	case d.slots <- struct{}{}:
	case <-ctx.Done():
		done(ctx.Err())
		return
	}
	st := d.streams[d.next.Add(1)%uint64(len(d.streams))]
	m := &nats.Msg{Subject: st.subject, Data: value}
	d.mu.Lock()
	d.pending[m] = done
	d.mu.Unlock()
	for {
		if err := ctx.Err(); err != nil {
			d.resolve(m, err)
			return
		}
		_, err := d.js[st.conn].PublishMsgAsync(m)
		if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			// The client's own bound is the same as slots, so this is
			// rare (acks counted by the client before the handler ran);
			// wait on, as runnel's client blocks while its buffer is full.
			continue
		}
		if err != nil {
			d.resolve(m, err)
		}
		return
	}
}

// Lengths returns each stream's message count.
func (d *JetStream) Lengths(ctx context.Context) ([]int64, error) {
	out := make([]int64, len(d.streams))
	for i, st := range d.streams {
		err := retry(ctx, func(ctx context.Context) error {
			s, err := d.js[st.conn].Stream(ctx, st.name)
			if err != nil {
				return err
			}
			info, err := s.Info(ctx)
			if err != nil {
				return err
			}
			out[i] = int64(info.State.Msgs)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", st.name, err)
		}
	}
	return out, nil
}

// retry calls f, each call bounded to 10s, until it succeeds, a minute has
// passed or ctx ends. On a loaded machine a clustered stream can take
// longer than one API call's timeout to answer, while its raft group
// elects a leader.
func retry(ctx context.Context, f func(context.Context) error) error {
	limit, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var err error
	waitFor(limit, time.Minute, func() bool {
		cctx, cancel := context.WithTimeout(limit, 10*time.Second)
		defer cancel()
		err = f(cctx)
		return err == nil
	})
	return err
}

// Read replays a stream from its first message with an ordered consumer.
func (d *JetStream) Read(ctx context.Context, partition int, n int64, fn func(value []byte)) error {
	if n <= 0 {
		return nil
	}
	st := d.streams[partition]
	var cons jetstream.Consumer
	err := retry(ctx, func(ctx context.Context) (err error) {
		cons, err = d.js[st.conn].OrderedConsumer(ctx, st.name, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
		return err
	})
	if err != nil {
		return fmt.Errorf("stream %s: ordered consumer: %w", st.name, err)
	}
	var read atomic.Int64
	all := make(chan struct{})
	failed := make(chan error, 1)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		// The handler runs on one goroutine at a time.
		if read.Load() == n {
			return
		}
		fn(m.Data())
		if read.Add(1) == n {
			close(all)
		}
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		select {
		case failed <- err:
		default:
		}
	}))
	if err != nil {
		return err
	}
	defer func() {
		cc.Stop()
		<-cc.Closed()
	}()
	for {
		select {
		case <-all:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("stream %s: %w after %d of %d messages", st.name, ctx.Err(), read.Load(), n)
		case err := <-failed:
			// Heartbeat and reset notices are reported here too; the
			// ordered consumer recovers from them by itself.
			if errors.Is(err, nats.ErrConnectionClosed) {
				return err
			}
		}
	}
}

// ReadGroup reads every stream through a durable pull consumer named group
// on each, without acks (runnel's group members commit offsets rather than
// acknowledge records), shared by members subscriptions, so that the
// server spreads each stream's messages over the members, until ctx ends.
// Unlike a runnel group, which gives each partition to one member, every
// member reads from every stream.
func (d *JetStream) ReadGroup(ctx context.Context, group string, members int, fn func(value []byte)) error {
	var ccs []jetstream.ConsumeContext
	defer func() {
		for _, cc := range ccs {
			cc.Stop()
			<-cc.Closed()
		}
	}()
	for _, st := range d.streams {
		var cons jetstream.Consumer
		err := retry(ctx, func(ctx context.Context) (err error) {
			cons, err = d.js[st.conn].CreateOrUpdateConsumer(ctx, st.name, jetstream.ConsumerConfig{
				Durable:       group,
				AckPolicy:     jetstream.AckNonePolicy,
				DeliverPolicy: jetstream.DeliverAllPolicy,
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("stream %s: consumer %s: %w", st.name, group, err)
		}
		for range max(members, 1) {
			cc, err := cons.Consume(func(m jetstream.Msg) { fn(m.Data()) })
			if err != nil {
				return fmt.Errorf("stream %s: consumer %s: %w", st.name, group, err)
			}
			ccs = append(ccs, cc)
		}
	}
	<-ctx.Done()
	return nil
}
