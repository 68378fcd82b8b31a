package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
)

func TestNewLogger(t *testing.T) {
	for _, tc := range []struct {
		level string
		want  slog.Level
	}{
		{"debug", slog.LevelDebug},
		{"info", slog.LevelInfo},
		{"WARN", slog.LevelWarn},
		{"error", slog.LevelError},
	} {
		l, err := newLogger(io.Discard, tc.level)
		if err != nil {
			t.Fatalf("newLogger(%q): %v", tc.level, err)
		}
		if !l.Enabled(context.Background(), tc.want) || l.Enabled(context.Background(), tc.want-1) {
			t.Errorf("newLogger(%q) does not log from %v up", tc.level, tc.want)
		}
	}
	_, err := newLogger(io.Discard, "loud")
	if want := `--log-level "loud": use debug, info, warn or error`; err == nil || err.Error() != want {
		t.Errorf("newLogger(loud) = %v, want %s", err, want)
	}
}
