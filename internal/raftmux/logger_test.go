package raftmux

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

type stringer struct{}

func (*stringer) String() string { return "node 1" }

func TestLoggerLevelsAndValues(t *testing.T) {
	var buf bytes.Buffer
	h := slog.NewTextHandler(&buf, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})
	l := NewLogger(slog.New(h)).Named("raft").With("group", "a")
	l.Trace("trace is dropped at debug")
	l.Debug("debug")
	l.Info("routine info")
	l.Info("entering leader state", "leader", &stringer{})
	l.Warn("warn", "servers", hclog.Fmt("%d servers", 3))
	l.Error("error", "error", errors.New("boom"), "nil", (*stringer)(nil))
	l.Named("net").Log(hclog.Info, "named", "k", 1)

	want := `level=DEBUG msg=debug group=a logger=raft
level=DEBUG msg="routine info" group=a logger=raft
level=INFO msg="entering leader state" group=a logger=raft leader="node 1"
level=WARN msg=warn group=a logger=raft servers="3 servers"
level=ERROR msg=error group=a logger=raft error=boom nil="node 1"
level=DEBUG msg=named group=a logger=raft.net k=1
`
	if got := buf.String(); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	if l.IsTrace() || !l.IsDebug() || !l.IsInfo() || l.GetLevel() != hclog.Debug {
		t.Fatalf("levels: trace %v debug %v info %v level %v", l.IsTrace(), l.IsDebug(), l.IsInfo(), l.GetLevel())
	}
	if got := l.ImpliedArgs(); len(got) != 2 || got[0] != "group" {
		t.Fatalf("ImpliedArgs = %v", got)
	}
	buf.Reset()
	l.StandardLogger(nil).Print("from a standard logger")
	if got := buf.String(); !strings.Contains(got, "level=DEBUG") || !strings.Contains(got, "logger=raft") {
		t.Fatalf("standard logger wrote %q", got)
	}
}
