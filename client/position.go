package client

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/runnel-dev/runnel/proto/runnelpb"
)

// Position says where in a partition a read or a lookup starts: the start
// of the log, its end, an offset, or a time. The zero Position is Start.
type Position struct {
	kind   posKind
	offset int64
	time   time.Time
}

type posKind uint8

const (
	posStart posKind = iota
	posEnd
	posOffset
	posTime
)

// Start is the first offset still in the log.
func Start() Position { return Position{kind: posStart} }

// End is the end of the log: a read from End sees only records produced
// after it began.
func End() Position { return Position{kind: posEnd} }

// Offset is an absolute offset.
func Offset(n int64) Position { return Position{kind: posOffset, offset: n} }

// Time is the first record with a timestamp at or after t, or the end of
// the log when there is none.
func Time(t time.Time) Position { return Position{kind: posTime, time: t} }

// IsStart reports whether p is Start.
func (p Position) IsStart() bool { return p.kind == posStart }

// IsEnd reports whether p is End.
func (p Position) IsEnd() bool { return p.kind == posEnd }

// OffsetValue returns p's offset, and whether p is an Offset.
func (p Position) OffsetValue() (int64, bool) { return p.offset, p.kind == posOffset }

// TimeValue returns p's time, and whether p is a Time.
func (p Position) TimeValue() (time.Time, bool) { return p.time, p.kind == posTime }

// String returns p in the grammar ParsePosition reads: "start", "end", an
// offset, or "@" and an RFC 3339 time.
func (p Position) String() string {
	switch p.kind {
	case posEnd:
		return "end"
	case posOffset:
		return strconv.FormatInt(p.offset, 10)
	case posTime:
		return "@" + p.time.Format(time.RFC3339Nano)
	}
	return "start"
}

func (p Position) proto() *runnelpb.Position {
	switch p.kind {
	case posEnd:
		return &runnelpb.Position{At: &runnelpb.Position_End{End: true}}
	case posOffset:
		return &runnelpb.Position{At: &runnelpb.Position_Offset{Offset: p.offset}}
	case posTime:
		return &runnelpb.Position{At: &runnelpb.Position_TimestampMs{TimestampMs: p.time.UnixMilli()}}
	}
	return &runnelpb.Position{At: &runnelpb.Position_Start{Start: true}}
}

// ErrBadPosition is returned, wrapped with the text and what is wrong with
// it, by ParsePosition.
var ErrBadPosition = errors.New("bad position")

// ParsePosition reads the one position grammar runnel uses everywhere:
//
//	start               the first offset still in the log
//	end                 the end of the log
//	OFFSET              an offset, an integer >= 0
//	@RFC3339            a time, such as @2026-01-02T15:04:05Z
//	@-DURATION          a time that long ago, such as @-1h30m or @-90s
func ParsePosition(s string) (Position, error) {
	return parsePosition(s, time.Now())
}

func parsePosition(s string, now time.Time) (Position, error) {
	bad := func(why string) (Position, error) {
		return Position{}, fmt.Errorf("%w %q: %s", ErrBadPosition, s, why)
	}
	switch {
	case s == "start":
		return Start(), nil
	case s == "end":
		return End(), nil
	case s == "":
		return bad("want start, end, an offset, @TIME or @-DURATION")
	case strings.HasPrefix(s, "@-"):
		d, err := time.ParseDuration(s[2:])
		if err != nil || d < 0 {
			return bad("want a duration after @-, such as @-1h30m or @-90s")
		}
		return Time(now.Add(-d)), nil
	case s[0] == '@':
		t, err := time.Parse(time.RFC3339Nano, s[1:])
		if err != nil {
			return bad("want an RFC 3339 time after @, such as @2026-01-02T15:04:05Z, or @-DURATION such as @-1h")
		}
		return Time(t), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return bad("want start, end, an offset, @TIME or @-DURATION")
	}
	if n < 0 {
		return bad("an offset cannot be negative")
	}
	return Offset(n), nil
}
