package client

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"
)

// DefaultBroker is the address `runnel serve` listens on by default, used
// when no Brokers option is given.
const DefaultBroker = "127.0.0.1:7070"

// Option configures a Client; pass options to New.
type Option func(*config)

// AcksLevel says when the broker acknowledges a produce.
type AcksLevel int8

const (
	// AcksAll: acknowledged once a quorum of replicas has the records,
	// fsynced. The default.
	AcksAll AcksLevel = iota
	// AcksLeader: acknowledged once the leader has taken the records in:
	// on a single node written but not yet fsynced; in a cluster ordered
	// in the partition's raft log but not yet committed, so their offsets
	// are not known yet (-1) and a leader that fails before the commit can
	// lose them. A partition's later batches are answered without waiting
	// for its earlier ones to commit.
	AcksLeader
	// AcksNone: acknowledged once the broker accepted the batch, before it is
	// written. Records get offset -1.
	AcksNone
)

// String returns "all", "leader" or "none".
func (a AcksLevel) String() string {
	switch a {
	case AcksAll:
		return "all"
	case AcksLeader:
		return "leader"
	case AcksNone:
		return "none"
	}
	return fmt.Sprintf("AcksLevel(%d)", int8(a))
}

// ParseAcks parses "all", "leader" or "none".
func ParseAcks(s string) (AcksLevel, error) {
	switch s {
	case "all", "-1":
		return AcksAll, nil
	case "leader", "1":
		return AcksLeader, nil
	case "none", "0":
		return AcksNone, nil
	}
	return 0, fmt.Errorf("acks %q: want none, leader or all", s)
}

type config struct {
	brokers          []string
	dial             func(ctx context.Context, addr string) (net.Conn, error)
	acks             AcksLevel
	linger           time.Duration
	maxBatchBytes    int
	maxBufferedBytes int64
	backoffMin       time.Duration
	backoffMax       time.Duration
	deliveryTimeout  time.Duration
	requestTimeout   time.Duration
	metadataMaxAge   time.Duration
	partitioner      Partitioner
	maxInFlight      int
	fetchCredit      int64
	fetchMaxBytes    int32
	logger           *slog.Logger
}

func defaultConfig() config {
	return config{
		acks:             AcksAll,
		linger:           5 * time.Millisecond,
		maxBatchBytes:    1 << 20,
		maxBufferedBytes: 64 << 20,
		backoffMin:       50 * time.Millisecond,
		backoffMax:       time.Second,
		deliveryTimeout:  2 * time.Minute,
		requestTimeout:   30 * time.Second,
		metadataMaxAge:   5 * time.Minute,
		maxInFlight:      1,
		fetchCredit:      4 << 20,
		fetchMaxBytes:    1 << 20,
	}
}

func (c *config) validate() error {
	if len(c.brokers) == 0 {
		c.brokers = []string{DefaultBroker}
	}
	if c.partitioner == nil {
		c.partitioner = KeyPartitioner()
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.maxBatchBytes < 1024:
		return fmt.Errorf("client: MaxBatchBytes %d is below 1024", c.maxBatchBytes)
	case c.maxBufferedBytes < int64(c.maxBatchBytes):
		return fmt.Errorf("client: MaxBufferedBytes %d is below MaxBatchBytes %d", c.maxBufferedBytes, c.maxBatchBytes)
	case c.maxInFlight < 1:
		return fmt.Errorf("client: MaxInFlight %d is below 1", c.maxInFlight)
	case c.backoffMin <= 0 || c.backoffMax < c.backoffMin:
		return fmt.Errorf("client: RetryBackoff(%v, %v) needs 0 < min <= max", c.backoffMin, c.backoffMax)
	case c.linger < 0 || c.deliveryTimeout <= 0 || c.requestTimeout <= 0:
		return fmt.Errorf("client: Linger must be >= 0, DeliveryTimeout and RequestTimeout > 0")
	case c.fetchCredit < int64(c.fetchMaxBytes) || c.fetchMaxBytes < 1024:
		return fmt.Errorf("client: FetchCredit %d must be at least FetchMaxBytes %d, itself at least 1024", c.fetchCredit, c.fetchMaxBytes)
	}
	return nil
}

// Brokers sets the addresses (host:port) to bootstrap from. Each argument
// may itself be a comma-separated list, as in "a:7070,b:7070". The default
// is DefaultBroker.
func Brokers(addrs ...string) Option {
	return func(c *config) {
		for _, a := range addrs {
			for _, s := range strings.Split(a, ",") {
				if s = strings.TrimSpace(s); s != "" {
					c.brokers = append(c.brokers, s)
				}
			}
		}
	}
}

// Dialer sets the function that opens connections to brokers, in place of
// TCP. With an embedded broker, pass its DialContext to talk to it
// in-process.
func Dialer(dial func(ctx context.Context, addr string) (net.Conn, error)) Option {
	return func(c *config) { c.dial = dial }
}

// Acks sets when produced records count as written; the default is AcksAll.
func Acks(a AcksLevel) Option { return func(c *config) { c.acks = a } }

// Linger sets how long a partition's batch may wait for more records before
// it is sent; the default is 5ms. Batches go out sooner when they are full
// or on Flush.
func Linger(d time.Duration) Option { return func(c *config) { c.linger = d } }

// MaxBatchBytes caps the size of one record batch; the default is 1 MiB. A
// record too large for a batch on its own is sent alone, for the broker to
// reject it with ErrInvalidArgument (BATCH_TOO_LARGE).
func MaxBatchBytes(n int) Option { return func(c *config) { c.maxBatchBytes = n } }

// MaxBufferedBytes caps the bytes of records produced but not yet acked;
// the default is 64 MiB. When full, Produce blocks until there is room or
// its context ends.
func MaxBufferedBytes(n int64) Option { return func(c *config) { c.maxBufferedBytes = n } }

// RetryBackoff sets the bounds of the exponential backoff with full jitter
// between retries; the default is 50ms to 1s. A delay the broker asks for
// takes precedence. While a partition's leader moves, retries wait at most
// 5 times min, and a retry that goes to another broker (a new leader, or a
// replica asked for the leader in place of one that cannot be reached)
// goes at once.
func RetryBackoff(min, max time.Duration) Option {
	return func(c *config) { c.backoffMin, c.backoffMax = min, max }
}

// DeliveryTimeout bounds how long a record is retried before it fails with
// the last error; the default is 2 minutes.
func DeliveryTimeout(d time.Duration) Option { return func(c *config) { c.deliveryTimeout = d } }

// RequestTimeout bounds one request to a broker; the default is 30s. For a
// produce it is how long the broker waits for the batch to commit before it
// answers with ErrUnknownOutcome, which the producer retries; a broker that
// does not answer at all is given up on after RequestTimeout and a grace
// period of a quarter of it, at least 2s.
func RequestTimeout(d time.Duration) Option { return func(c *config) { c.requestTimeout = d } }

// MetadataMaxAge sets how often cached metadata (partition counts, leaders)
// is refreshed when nothing forces it sooner; the default is 5 minutes.
func MetadataMaxAge(d time.Duration) Option { return func(c *config) { c.metadataMaxAge = d } }

// RecordPartitioner sets how records are assigned partitions; the default
// is KeyPartitioner.
func RecordPartitioner(p Partitioner) Option { return func(c *config) { c.partitioner = p } }

// MaxInFlight caps the produce requests in flight per partition; the
// default is 1, which keeps records of a partition in order across retries.
// More raises throughput to a partition but lets a retried batch land after
// a later one.
func MaxInFlight(n int) Option { return func(c *config) { c.maxInFlight = n } }

// FetchCredit sets the bytes a consumer lets the broker send ahead of what
// it has read (credit-based flow control), and FetchMaxBytes the size of
// one fetch response. The defaults are 4 MiB and 1 MiB.
func FetchCredit(credit int64, maxBytes int32) Option {
	return func(c *config) { c.fetchCredit, c.fetchMaxBytes = credit, maxBytes }
}

// Logger sets where the client logs retries and reconnects; the default
// discards.
func Logger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }
