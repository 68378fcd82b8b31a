package raftmux

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// NewLogger returns an hclog.Logger, the kind raft.Config.Logger and raft's
// transport take, that writes to l (nil means slog.Default). raft reports
// routine events at Info, so its levels map down: Trace to slog.LevelDebug-4,
// Debug and Info to slog.LevelDebug, except that a node becoming leader stays
// at slog.LevelInfo, and Warn and Error to slog.LevelWarn and
// slog.LevelError. The name set by Named goes out as the attribute
// "logger". SetLevel does nothing: l's handler decides.
func NewLogger(l *slog.Logger) hclog.Logger {
	if l == nil {
		l = slog.Default()
	}
	return &hclogger{l: l}
}

// leaderMsg is what raft logs at Info when a node becomes leader (raft.go,
// runLeader). Should raft reword it, leadership is logged at Debug.
const leaderMsg = "entering leader state"

// slogLevel maps an hclog level, and msg for Info, to a slog level.
func slogLevel(level hclog.Level, msg string) slog.Level {
	switch level {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	if msg == leaderMsg {
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

// hclogger is an hclog.Logger writing to a slog.Logger.
type hclogger struct {
	l       *slog.Logger
	name    string
	implied []any
}

var _ hclog.Logger = (*hclogger)(nil)

func (h *hclogger) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	ctx := context.Background()
	lvl := slogLevel(level, msg)
	if !h.l.Enabled(ctx, lvl) {
		return
	}
	if h.name != "" {
		args = append([]any{"logger", h.name}, args...)
	}
	h.l.Log(ctx, lvl, msg, values(args)...)
}

// values returns args with each value raft formats for printing, a
// fmt.Stringer or an hclog.Format, as a string, so that every slog handler
// prints what hclog would have.
func values(args []any) []any {
	out := make([]any, len(args))
	for i, v := range args {
		if i%2 == 1 {
			switch v := v.(type) {
			case hclog.Format:
				if len(v) > 0 {
					if f, ok := v[0].(string); ok {
						out[i] = fmt.Sprintf(f, v[1:]...)
						continue
					}
				}
			case fmt.Stringer:
				out[i] = fmt.Sprint(v) // fmt survives a nil receiver
				continue
			}
		}
		out[i] = v
	}
	return out
}

func (h *hclogger) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hclogger) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hclogger) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hclogger) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hclogger) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hclogger) enabled(level hclog.Level) bool {
	return h.l.Enabled(context.Background(), slogLevel(level, ""))
}

func (h *hclogger) IsTrace() bool { return h.enabled(hclog.Trace) }
func (h *hclogger) IsDebug() bool { return h.enabled(hclog.Debug) }
func (h *hclogger) IsInfo() bool  { return h.enabled(hclog.Info) }
func (h *hclogger) IsWarn() bool  { return h.enabled(hclog.Warn) }
func (h *hclogger) IsError() bool { return h.enabled(hclog.Error) }

func (h *hclogger) ImpliedArgs() []any { return h.implied }

func (h *hclogger) With(args ...any) hclog.Logger {
	return &hclogger{
		l:       h.l.With(values(args)...),
		name:    h.name,
		implied: append(h.implied[:len(h.implied):len(h.implied)], args...),
	}
}

func (h *hclogger) Name() string { return h.name }

func (h *hclogger) Named(name string) hclog.Logger {
	if h.name != "" {
		name = h.name + "." + name
	}
	return h.ResetNamed(name)
}

func (h *hclogger) ResetNamed(name string) hclog.Logger {
	return &hclogger{l: h.l, name: name, implied: h.implied}
}

func (h *hclogger) SetLevel(hclog.Level) {}

// GetLevel returns the most verbose hclog level whose messages, in general,
// reach the handler.
func (h *hclogger) GetLevel() hclog.Level {
	for _, level := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Warn, hclog.Error} {
		if h.enabled(level) {
			return level
		}
	}
	return hclog.Off
}

func (h *hclogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	level := slog.LevelDebug
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		level = slogLevel(opts.ForceLevel, "")
	}
	l := h.l
	if h.name != "" {
		l = l.With("logger", h.name)
	}
	return slog.NewLogLogger(l.Handler(), level)
}

func (h *hclogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	return h.StandardLogger(opts).Writer()
}
