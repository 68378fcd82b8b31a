package partition

import (
	"context"
	"io"
	stdlog "log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// raftLogger sends raft's hclog messages to slog. raft's routine messages
// (elections, snapshots, compactions) are Info in hclog and go out at
// Debug, so a node with many partitions stays readable; warnings and errors
// keep their level.
type raftLogger struct {
	l    *slog.Logger
	name string
	args []any
}

var _ hclog.Logger = (*raftLogger)(nil)

func newRaftLogger(l *slog.Logger) *raftLogger {
	return &raftLogger{l: l, name: "raft"}
}

func slogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace, hclog.Debug, hclog.Info, hclog.NoLevel:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (r *raftLogger) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	lv := slogLevel(level)
	ctx := context.Background()
	if !r.l.Enabled(ctx, lv) {
		return
	}
	all := make([]any, 0, 2+len(r.args)+len(args))
	all = append(all, "component", r.name)
	all = append(all, r.args...)
	all = append(all, args...)
	r.l.Log(ctx, lv, msg, all...)
}

func (r *raftLogger) Trace(msg string, args ...any) { r.Log(hclog.Trace, msg, args...) }
func (r *raftLogger) Debug(msg string, args ...any) { r.Log(hclog.Debug, msg, args...) }
func (r *raftLogger) Info(msg string, args ...any)  { r.Log(hclog.Info, msg, args...) }
func (r *raftLogger) Warn(msg string, args ...any)  { r.Log(hclog.Warn, msg, args...) }
func (r *raftLogger) Error(msg string, args ...any) { r.Log(hclog.Error, msg, args...) }

func (r *raftLogger) enabled(level hclog.Level) bool {
	return r.l.Enabled(context.Background(), slogLevel(level))
}

func (r *raftLogger) IsTrace() bool { return r.enabled(hclog.Trace) }
func (r *raftLogger) IsDebug() bool { return r.enabled(hclog.Debug) }
func (r *raftLogger) IsInfo() bool  { return r.enabled(hclog.Info) }
func (r *raftLogger) IsWarn() bool  { return r.enabled(hclog.Warn) }
func (r *raftLogger) IsError() bool { return r.enabled(hclog.Error) }

func (r *raftLogger) ImpliedArgs() []any { return r.args }

func (r *raftLogger) With(args ...any) hclog.Logger {
	return &raftLogger{l: r.l, name: r.name, args: append(append([]any(nil), r.args...), args...)}
}

func (r *raftLogger) Name() string { return r.name }

func (r *raftLogger) Named(name string) hclog.Logger {
	return &raftLogger{l: r.l, name: r.name + "." + name, args: r.args}
}

func (r *raftLogger) ResetNamed(name string) hclog.Logger {
	return &raftLogger{l: r.l, name: name, args: r.args}
}

// SetLevel does nothing: the slog handler decides.
func (r *raftLogger) SetLevel(hclog.Level) {}

// GetLevel returns the most verbose level the handler takes.
func (r *raftLogger) GetLevel() hclog.Level {
	for _, lv := range []hclog.Level{hclog.Info, hclog.Warn, hclog.Error} {
		if r.enabled(lv) {
			return lv
		}
	}
	return hclog.Off
}

func (r *raftLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *stdlog.Logger {
	return stdlog.New(r.StandardWriter(opts), "", 0)
}

func (r *raftLogger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return slogWriter{r}
}

// slogWriter logs each write as one message, for raft's use of a standard
// logger.
type slogWriter struct{ r *raftLogger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.r.Info(string(p))
	return len(p), nil
}
