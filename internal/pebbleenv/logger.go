package pebbleenv

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Logger sends Pebble's messages to l: routine ones at debug level, errors
// at error level. Fatalf logs and panics: Pebble calls it on a broken
// invariant, after which the store must not go on.
func Logger(l *slog.Logger) pebble.Logger { return logger{l} }

type logger struct{ l *slog.Logger }

func (p logger) Infof(format string, args ...any) {
	if p.l.Enabled(context.Background(), slog.LevelDebug) {
		p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
	}
}

func (p logger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p logger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "component", "pebble")
	if strings.Contains(msg, "no space left on device") {
		p.l.Error("the disk of the data folder is full and the node stops: free disk space and start it again; " +
			"the records it acknowledged are kept. A larger --min-free-disk refuses produce earlier")
	}
	panic("pebble: " + msg)
}

// EventListener logs Pebble's background errors, corruption, write stalls
// and slow disk writes to l, and its flushes and compactions at debug
// level (to line latency spikes up with them), and counts write stalls in
// stalls when it is not nil.
func EventListener(l *slog.Logger, stalls *atomic.Int64) *pebble.EventListener {
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			l.Error("pebble background error", "err", err)
		},
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			l.Error("pebble data corruption", "path", info.Path, "err", info.Details)
		},
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			if stalls != nil {
				stalls.Add(1)
			}
			l.Debug("pebble write stall", "reason", info.Reason)
		},
		WriteStallEnd: func() {
			l.Debug("pebble write stall ended")
		},
		FlushEnd: func(info pebble.FlushInfo) {
			// A failed flush is a background error, logged above; an
			// empty one is routine.
			if info.Err == nil {
				l.Debug("pebble flush", "memtable_bytes", info.InputBytes, "tables", len(info.Output), "duration", info.TotalDuration)
			}
		},
		CompactionEnd: func(info pebble.CompactionInfo) {
			if info.Err == nil {
				l.Debug("pebble compaction", "reason", info.Reason, "inputs", len(info.Input), "tables", len(info.Output.Tables), "duration", info.TotalDuration)
			}
		},
		DiskSlow: func(info pebble.DiskSlowInfo) {
			l.Warn("slow disk write", "path", info.Path, "duration", info.Duration)
		},
	}
}

// ValueSeparation is the value separation policy of runnel's stores: their
// values (record batches, raft entries) are large, written once and deleted
// in order, so in blob files compactions move only keys and handles.
func ValueSeparation() pebble.ValueSeparationPolicy {
	return pebble.ValueSeparationPolicy{
		Enabled:               true,
		MinimumSize:           1 << 10,
		MaxBlobReferenceDepth: 10,
		RewriteMinimumAge:     5 * time.Minute,
		TargetGarbageRatio:    0.2,
	}
}
