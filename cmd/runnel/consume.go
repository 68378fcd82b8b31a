package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/runnel-dev/runnel/client"
)

// flushEvery is how often consume flushes buffered output while records
// trickle in, so a terminal following a topic sees them promptly.
const flushEvery = 100 * time.Millisecond

func consumeCmd() *cobra.Command {
	var (
		f         clientFlags
		partition int32
		from      string
		num       int64
		untilEnd  bool
		group     string
	)
	cmd := &cobra.Command{
		Use:   "consume TOPIC",
		Short: "Print the records of a topic",
		Long: `Print the records of TOPIC to stdout, one per line: the value (--format text)
or a JSON object (--format json). Without --partition, all partitions are
read, merged. --from takes start, end, an OFFSET, @RFC3339 or @-DURATION
(such as @-1h30m). Without --num or --until-end it waits for new records
until interrupted.

With --group G the command joins consumer group G: the group's members share
the partitions, each partition resumes at the group's committed offset (--from
applies to partitions it has none for), and offsets of printed records are
committed as it goes and on exit.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			topic := args[0]
			if err := f.checkFormat("text", "json"); err != nil {
				return err
			}
			pos, err := client.ParsePosition(from)
			if err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			if num < 0 {
				return fmt.Errorf("--num %d: want a count of records, 1 or more", num)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			c, err := f.newClient(ctx)
			if err != nil {
				return explain(err)
			}
			defer c.Close()
			if group != "" {
				if cmd.Flags().Changed("partition") {
					return fmt.Errorf("--partition and --group: a group member reads the partitions the group assigns it; drop one")
				}
				err = consumeGroup(ctx, c, cmd, group, consumeArgs{topic: topic, from: pos, num: num, untilEnd: untilEnd, json: f.format == "json"})
				if err != nil && ctx.Err() != nil && cmd.Context().Err() == nil {
					return nil
				}
				return explain(err)
			}
			err = consume(ctx, c, cmd, consumeArgs{
				topic:     topic,
				partition: partition,
				all:       !cmd.Flags().Changed("partition"),
				from:      pos,
				num:       num,
				untilEnd:  untilEnd,
				json:      f.format == "json",
			})
			if err != nil && ctx.Err() != nil && cmd.Context().Err() == nil {
				return nil // interrupted by the user: not a failure
			}
			return explain(err)
		},
	}
	f.addBrokersFlag(cmd)
	f.addFormatFlag(cmd, "text", "json")
	fl := cmd.Flags()
	fl.Int32Var(&partition, "partition", 0, "read only this partition (default: all, merged)")
	fl.StringVar(&from, "from", "start", "where to start: start, end, OFFSET, @RFC3339 or @-DURATION")
	fl.Int64Var(&num, "num", 0, "stop after this many records (0: no limit)")
	fl.BoolVar(&untilEnd, "until-end", false, "stop once every partition is read to the end it had at the start")
	fl.StringVar(&group, "group", "", "consume as a member of this consumer group")
	return cmd
}

type consumeArgs struct {
	topic     string
	partition int32
	all       bool
	from      client.Position
	num       int64
	untilEnd  bool
	json      bool
}

// consume reads the selected partitions, one goroutine each, and writes
// their records to stdout through one buffered writer.
func consume(ctx context.Context, c *client.Client, cmd *cobra.Command, a consumeArgs) error {
	t, err := c.DescribeTopic(ctx, a.topic)
	if err != nil {
		return err
	}
	var parts []client.PartitionInfo
	if a.all {
		parts = t.Partitions
	} else {
		if a.partition < 0 || int(a.partition) >= len(t.Partitions) {
			return fmt.Errorf("topic %q has no partition %d; it has partitions 0 to %d", a.topic, a.partition, len(t.Partitions)-1)
		}
		parts = []client.PartitionInfo{t.Partitions[a.partition]}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := &output{w: bufio.NewWriterSize(cmd.OutOrStdout(), 256<<10), json: a.json, num: a.num, cancel: cancel}

	// With --until-end, read each partition up to the end it has now; skip
	// those with nothing to read from the start position.
	ends := make([]int64, len(parts))
	if a.untilEnd {
		for i, p := range parts {
			offs, err := c.ListOffsets(ctx, a.topic, p.Partition, a.from)
			if err != nil {
				return err
			}
			ends[i] = offs.End
			if offs.Offset >= offs.End {
				ends[i] = -1 // nothing to read
			}
		}
	}

	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for i, p := range parts {
		if a.untilEnd && ends[i] < 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r, err := range c.Consume(ctx, a.topic, p.Partition, a.from) {
				if err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				if !out.write(r) {
					return
				}
				if a.untilEnd && r.Offset >= ends[i]-1 {
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-tick.C:
			out.flush()
		}
	}
	if err := out.flush(); err != nil {
		return fmt.Errorf("write stdout: %w", err)
	}
	if firstErr != nil {
		return firstErr
	}
	return nil
}

// output writes records as lines, from several goroutines, and counts them
// for --num.
type output struct {
	mu     sync.Mutex
	w      *bufio.Writer
	buf    []byte
	json   bool
	num    int64 // 0: no limit
	n      int64
	err    error
	cancel context.CancelFunc
}

// write writes r and reports whether to go on.
func (o *output) write(r *client.Record) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil || (o.num > 0 && o.n >= o.num) {
		return false
	}
	if o.json {
		o.buf = appendJSONRecord(o.buf[:0], r)
		_, o.err = o.w.Write(o.buf)
	} else {
		o.w.Write(r.Value)
		o.err = o.w.WriteByte('\n')
	}
	o.n++
	if o.err != nil || (o.num > 0 && o.n >= o.num) {
		o.cancel()
		return false
	}
	return true
}

func (o *output) flush() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return o.err
	}
	o.err = o.w.Flush()
	return o.err
}

// appendJSONRecord appends r as one JSON line:
//
//	{"topic","partition","offset","timestamp","key","value","headers":[{"key","value"}]}
//
// key and value are JSON strings when they are valid UTF-8; otherwise both
// are base64 and the object has "encoding":"base64". A missing key is null.
func appendJSONRecord(b []byte, r *client.Record) []byte {
	b = append(b, `{"topic":`...)
	b = appendJSONString(b, r.Topic)
	b = append(b, `,"partition":`...)
	b = strconv.AppendInt(b, int64(r.Partition), 10)
	b = append(b, `,"offset":`...)
	b = strconv.AppendInt(b, r.Offset, 10)
	b = append(b, `,"timestamp":"`...)
	b = r.Timestamp.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	text := utf8.Valid(r.Key) && utf8.Valid(r.Value)
	b = append(b, `,"key":`...)
	b = appendBytes(b, r.Key, text)
	b = append(b, `,"value":`...)
	b = appendBytes(b, r.Value, text)
	if !text {
		b = append(b, `,"encoding":"base64"`...)
	}
	b = append(b, `,"headers":[`...)
	for i, h := range r.Headers {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"key":`...)
		b = appendJSONString(b, strings.ToValidUTF8(h.Key, "\uFFFD"))
		b = append(b, `,"value":`...)
		ht := utf8.Valid(h.Value)
		b = appendBytes(b, h.Value, ht)
		if !ht {
			b = append(b, `,"encoding":"base64"`...)
		}
		b = append(b, '}')
	}
	return append(b, "]}\n"...)
}

// appendBytes appends v as a JSON string, base64 unless text; nil is null.
func appendBytes(b, v []byte, text bool) []byte {
	switch {
	case v == nil:
		return append(b, "null"...)
	case text:
		return appendJSONString(b, v)
	}
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s, valid UTF-8, as a JSON string.
func appendJSONString[T string | []byte](b []byte, s T) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
