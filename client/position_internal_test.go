package client

import (
	"errors"
	"testing"
	"time"
)

func TestParsePosition(t *testing.T) {
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want Position
	}{
		{"start", Start()},
		{"end", End()},
		{"0", Offset(0)},
		{"42", Offset(42)},
		{"@2026-01-02T15:04:05Z", Time(time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC))},
		{"@2026-01-02T15:04:05.123+02:00", Time(time.Date(2026, 1, 2, 13, 4, 5, 123e6, time.UTC))},
		{"@-1h30m", Time(now.Add(-90 * time.Minute))},
		{"@-90s", Time(now.Add(-90 * time.Second))},
	}
	for _, tc := range cases {
		got, err := parsePosition(tc.in, now)
		if err != nil {
			t.Errorf("parsePosition(%q): %v", tc.in, err)
			continue
		}
		if got.kind != tc.want.kind || got.offset != tc.want.offset || !got.time.Equal(tc.want.time) {
			t.Errorf("parsePosition(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{"", "-1", "begin", "@", "@yesterday", "@-", "@-1d", "@1h", "12abc", "@--1h"} {
		if _, err := parsePosition(bad, now); !errors.Is(err, ErrBadPosition) {
			t.Errorf("parsePosition(%q) = %v, want ErrBadPosition", bad, err)
		}
	}
}

func TestPositionStringRoundTrips(t *testing.T) {
	for _, p := range []Position{Start(), End(), Offset(7), Time(time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC))} {
		got, err := ParsePosition(p.String())
		if err != nil || got.kind != p.kind || got.offset != p.offset || !got.time.Equal(p.time) {
			t.Errorf("ParsePosition(%q) = %v, %v", p.String(), got, err)
		}
	}
}
