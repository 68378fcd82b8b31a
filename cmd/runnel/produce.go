package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/runnel-dev/runnel/client"
)

// maxLine bounds one input line, and so one record. The broker refuses
// records above the topic's max.message.bytes with a clear error; this
// bound only keeps a runaway line from exhausting memory.
const maxLine = 16 << 20

func produceCmd() *cobra.Command {
	var (
		f         clientFlags
		key       string
		keySep    string
		headers   []string
		acks      string
		partition int32
		timeout   time.Duration
		reqTime   time.Duration
		logLevel  string
		offsets   bool
	)
	cmd := &cobra.Command{
		Use:   "produce TOPIC",
		Short: "Produce one record per line of stdin",
		Long: `Produce one record per line of standard input to TOPIC. With --key every
record gets that key; with --key-sep the part of each line before the first
SEP is the key and the rest the value. Prints a summary to stderr and exits 0
only if every record was acknowledged.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			topic := args[0]
			level, err := client.ParseAcks(acks)
			if err != nil {
				return fmt.Errorf("--acks %q: use none, leader or all", acks)
			}
			if cmd.Flags().Changed("key") && keySep != "" {
				return errors.New("use --key or --key-sep, not both")
			}
			var hdrs []client.Header
			for _, h := range headers {
				k, v, ok := strings.Cut(h, "=")
				if !ok || k == "" {
					return fmt.Errorf("--header %q: want KEY=VALUE", h)
				}
				hdrs = append(hdrs, client.Header{Key: k, Value: []byte(v)})
			}
			if timeout <= 0 {
				return fmt.Errorf("--timeout %v: use a positive duration, such as 30s", timeout)
			}
			if reqTime <= 0 {
				return fmt.Errorf("--request-timeout %v: use a positive duration, such as 10s", reqTime)
			}
			opts := []client.Option{client.Acks(level), client.DeliveryTimeout(timeout), client.RequestTimeout(reqTime)}
			if logLevel != "" {
				logger, err := newLogger(cmd.ErrOrStderr(), logLevel)
				if err != nil {
					return err
				}
				opts = append(opts, client.Logger(logger))
			}
			manual := cmd.Flags().Changed("partition")
			if manual {
				opts = append(opts, client.RecordPartitioner(client.ManualPartitioner()))
			}
			ctx := cmd.Context()
			c, err := f.newClient(ctx, opts...)
			if err != nil {
				return explain(err)
			}
			defer c.Close()

			// Fail on a missing topic or partition before reading stdin.
			t, err := c.DescribeTopic(ctx, topic)
			if err != nil {
				return explain(err)
			}
			if manual && (partition < 0 || int(partition) >= len(t.Partitions)) {
				return fmt.Errorf("topic %q has no partition %d; it has partitions 0 to %d", topic, partition, len(t.Partitions)-1)
			}

			var (
				acked, failed atomic.Int64
				errOnce       sync.Once
				firstErr      error
			)
			promise := func(_ *client.Record, err error) {
				if err != nil {
					failed.Add(1)
					errOnce.Do(func() { firstErr = err })
					return
				}
				acked.Add(1)
			}
			var report *ackReport
			if offsets {
				report = newAckReport(cmd.OutOrStdout())
			}

			start := time.Now()
			var (
				total, bytesIn int64
				slab           []client.Record
				mem            arena
				keyBytes       []byte
				sep            = []byte(keySep)
			)
			if cmd.Flags().Changed("key") {
				keyBytes = []byte(key)
			}
			sc := bufio.NewScanner(cmd.InOrStdin())
			sc.Buffer(make([]byte, 1<<20), maxLine)
			var readErr error
			for sc.Scan() {
				line := sc.Bytes()
				if len(slab) == 0 {
					slab = make([]client.Record, 4096)
				}
				r := &slab[0]
				slab = slab[1:]
				r.Topic, r.Partition, r.Headers, r.Key = topic, partition, hdrs, keyBytes
				if len(sep) > 0 {
					i := bytes.Index(line, sep)
					if i < 0 {
						readErr = fmt.Errorf("line %d has no key separator %q; every line must be KEY%sVALUE with --key-sep", total+1, keySep, keySep)
						break
					}
					r.Key = mem.copy(line[:i])
					r.Value = mem.copy(line[i+len(sep):])
				} else {
					r.Value = mem.copy(line)
				}
				total++
				bytesIn += int64(len(r.Key) + len(r.Value))
				if report != nil {
					c.Produce(ctx, r, report.promise(total, promise))
					continue
				}
				c.Produce(ctx, r, promise)
			}
			if err := sc.Err(); err != nil && readErr == nil {
				if errors.Is(err, bufio.ErrTooLong) {
					readErr = fmt.Errorf("line %d is longer than %s; records this large cannot be produced", total+1, byteSize(maxLine))
				} else {
					readErr = fmt.Errorf("read stdin: %w", err)
				}
			}
			flushErr := c.Flush(ctx)
			elapsed := time.Since(start)
			if report != nil {
				// No promise runs once the client is closed.
				c.Close()
				report.close()
			}
			switch {
			case failed.Load() > 0:
				return fmt.Errorf("%d of %d records not acked: %v", failed.Load(), total, explain(firstErr))
			case flushErr != nil:
				return explain(flushErr)
			case readErr != nil:
				return fmt.Errorf("%v (%d records before it were acked)", readErr, acked.Load())
			}
			rate := float64(total) / max(elapsed.Seconds(), 1e-9)
			fmt.Fprintf(cmd.ErrOrStderr(), "produced %d records (%s) in %v, %.0f records/s\n",
				total, byteSize(bytesIn), elapsed.Round(time.Millisecond), rate)
			return nil
		},
	}
	f.addBrokersFlag(cmd)
	fl := cmd.Flags()
	fl.StringVar(&key, "key", "", "key for every record")
	fl.StringVar(&keySep, "key-sep", "", "split each line at the first SEP into key and value")
	fl.StringArrayVar(&headers, "header", nil, "header KEY=VALUE for every record (repeatable)")
	fl.StringVar(&acks, "acks", "all", "when a record counts as written: none, leader or all")
	fl.Int32Var(&partition, "partition", -1, "produce to this partition instead of by key")
	fl.BoolVar(&offsets, "print-offsets", false, `print one JSON line {"line", "partition", "offset"} to stdout per acknowledged record, as it is acknowledged`)
	fl.StringVar(&logLevel, "log-level", "warn", "log the client's retries and reconnects to stderr at this level: debug, info, warn or error (off when empty); at warn, a broker refusing writes (a full disk, a queue's backlog) is reported as it happens")
	fl.DurationVar(&timeout, "timeout", 30*time.Second, "how long a record may take to be acknowledged, retries included, before the command fails")
	fl.DurationVar(&reqTime, "request-timeout", 30*time.Second, "how long one attempt may wait for its acknowledgement before the batch is sent again")
	return cmd
}

// ackReport writes a JSON line per acknowledged record to stdout, in the
// order of the acknowledgements. Promises hand the lines to its goroutine,
// which flushes whenever it has caught up, so a reader sees each
// acknowledgement within moments of it.
type ackReport struct {
	lines chan ackLine
	done  chan struct{}
}

type ackLine struct {
	Line      int64 `json:"line"`
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

func newAckReport(out io.Writer) *ackReport {
	a := &ackReport{lines: make(chan ackLine, 4096), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		w := bufio.NewWriter(out)
		enc := json.NewEncoder(w)
		for l := range a.lines {
			enc.Encode(l)
			if len(a.lines) == 0 {
				w.Flush()
			}
		}
		w.Flush()
	}()
	return a
}

// promise returns the promise of input line n: it reports the record once
// acknowledged, then calls next.
func (a *ackReport) promise(n int64, next func(*client.Record, error)) func(*client.Record, error) {
	return func(r *client.Record, err error) {
		if err == nil {
			a.lines <- ackLine{Line: n, Partition: r.Partition, Offset: r.Offset}
		}
		next(r, err)
	}
}

// close writes out what is left; no promise may run after it.
func (a *ackReport) close() {
	close(a.lines)
	<-a.done
}

// arena hands out copies of input lines from large shared blocks, so
// producing a line costs no allocation of its own.
type arena struct{ buf []byte }

func (a *arena) copy(b []byte) []byte {
	if cap(a.buf)-len(a.buf) < len(b) {
		a.buf = make([]byte, 0, max(1<<20, len(b)))
	}
	start := len(a.buf)
	a.buf = append(a.buf, b...)
	return a.buf[start:len(a.buf):len(a.buf)]
}

// byteSize formats n bytes for people: 512 B, 1.5 KiB, 2.0 MiB.
func byteSize[T int | int64](n T) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := int64(n) / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
