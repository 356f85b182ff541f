package logging

import (
	"context"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"
)

// RequestLine is the access line of one request (docs/reference.md,
// "Request handling"): msg "request" and these fields, in this order.
type RequestLine struct {
	Method, Path, Route, Decision string
	Status                        int
	Duration                      time.Duration // written as duration_ms, a number
	RequestID                     string
}

// RequestLogger writes access lines; the handlers New makes implement it.
// The caller checks Enabled(ctx, slog.LevelInfo) first.
type RequestLogger interface {
	LogRequest(ctx context.Context, t time.Time, l RequestLine) error
}

// LogRequest writes l at info, logged at t, through h: with h's own
// encoder when it has one (a handler of New's), as a slog record
// otherwise. The caller checks h.Enabled(ctx, slog.LevelInfo) first.
func LogRequest(ctx context.Context, h slog.Handler, t time.Time, l RequestLine) error {
	if rl, ok := h.(RequestLogger); ok {
		return rl.LogRequest(ctx, t, l)
	}
	return h.Handle(ctx, requestRecord(t, l))
}

// LogRequest writes l at info, logged at t. The access line is on every
// request, and slog's generic path costs more than the whole gated path
// (issue 13: attribute resolution, a float through encoding/json), so a
// JSON logger of New's writes the line's bytes itself: exactly those slog
// would write (TestRequestLineIsSlogs, FuzzRequestLine), through the same
// locked writer. Anything this encoder does not handle (a string to
// escape, a duration beyond 11 days, a year outside 0..9999, a text or
// derived logger) goes through slog.
func (h contextHandler) LogRequest(ctx context.Context, t time.Time, l RequestLine) error {
	if h.lines != nil {
		if ok, err := h.lines.appendLine(t, l); ok {
			return err
		}
	}
	return h.Handle(ctx, requestRecord(t, l))
}

// requestRecord is l as a slog record.
func requestRecord(t time.Time, l RequestLine) slog.Record {
	rec := slog.NewRecord(t, slog.LevelInfo, "request", 0)
	rec.AddAttrs(slog.String("method", l.Method), slog.String("path", l.Path), slog.String("route", l.Route),
		slog.String("decision", l.Decision), slog.Int("status", l.Status),
		slog.Float64("duration_ms", float64(l.Duration.Microseconds())/1000), slog.String("request_id", l.RequestID))
	return rec
}

// maxLineMicros bounds the durations appendRequestLine writes: below it,
// the decimal of the microseconds over 1000 is what encoding/json writes
// for their float64 (the shortest that reads back as it).
const maxLineMicros = 1e12

// appendRequestLine appends l as slog's JSON handler writes it, or reports
// false when it would not write the same bytes.
func appendRequestLine(b []byte, t time.Time, l RequestLine) ([]byte, bool) {
	us := l.Duration.Microseconds()
	st := stampOf(t)
	if !st.fourDigitYear || us < 0 || us >= maxLineMicros ||
		!plain(l.Method) || !plain(l.Path) || !plain(l.Route) || !plain(l.Decision) || !plain(l.RequestID) {
		return b, false
	}
	b = append(b, `{"time":"`...)
	b = appendTime(b, st, t)
	b = append(b, `","level":"INFO","msg":"request","method":"`...)
	b = append(b, l.Method...)
	b = append(b, `","path":"`...)
	b = append(b, l.Path...)
	b = append(b, `","route":"`...)
	b = append(b, l.Route...)
	b = append(b, `","decision":"`...)
	b = append(b, l.Decision...)
	b = append(b, `","status":`...)
	b = strconv.AppendInt(b, int64(l.Status), 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendInt(b, us/1000, 10)
	if frac := us % 1000; frac != 0 {
		digits := [4]byte{'.', byte('0' + frac/100), byte('0' + frac/10%10), byte('0' + frac%10)}
		n := 4
		for digits[n-1] == '0' {
			n--
		}
		b = append(b, digits[:n]...)
	}
	b = append(b, `,"request_id":"`...)
	b = append(b, l.RequestID...)
	return append(b, "\"}\n"...), true
}

// plain reports whether slog writes s in JSON as it is: printable ASCII
// without '"' or '\\'. A string of 8 bytes or more is read a word at a
// time, its last word overlapping the one before.
func plain(s string) bool {
	if len(s) < 8 {
		for i := 0; i < len(s); i++ {
			if !plainByte[s[i]] {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(s)-8; i += 8 {
		if !plainWord(word(s[i:])) {
			return false
		}
	}
	return plainWord(word(s[len(s)-8:]))
}

var plainByte = func() (t [256]bool) {
	for c := 0x20; c <= 0x7e; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// plainWord is plain for the 8 bytes of v, with the classic "has a zero
// byte" test, (x - 0x01..) &^ x & 0x80.., for each byte that is not.
func plainWord(v uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	low := (v - 0x20*ones) &^ v // a byte below 0x20 (and, with v's high bits, from 0x80)
	del, quote, slash := v^0x7f*ones, v^'"'*ones, v^'\\'*ones
	return (v|low|(del-ones)&^del|(quote-ones)&^quote|(slash-ones)&^slash)&highs == 0
}

// word reads s[:8] as a little-endian word (the compiler makes it one
// load).
func word(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// stampOf returns t's second as text, formatted once a second
// (lastStamp): the fraction is all that changes between the lines of one
// second. A zone's offset changes only on a whole second, so one second of
// one location has one text.
func stampOf(t time.Time) *stamp {
	sec := t.Unix()
	st := lastStamp.Load()
	if st == nil || st.sec != sec || st.loc != t.Location() {
		st = newStamp(t, sec)
		lastStamp.Store(st)
	}
	return st
}

// appendTime appends t, of the second st, as slog writes it,
// t.Round(0).AppendFormat(b, time.RFC3339Nano).
func appendTime(b []byte, st *stamp, t time.Time) []byte {
	b = append(b, st.prefix...)
	if ns := t.Nanosecond(); ns != 0 {
		frac := [10]byte{'.', byte('0' + ns/1e8)}
		ns %= 1e8
		for i := 8; i > 0; i -= 2 { // two digits a step
			frac[i], frac[i+1] = digitPairs[ns%100*2], digitPairs[ns%100*2+1]
			ns /= 100
		}
		n := 10
		for frac[n-1] == '0' {
			n--
		}
		b = append(b, frac[:n]...)
	}
	return append(b, st.zone...)
}

// digitPairs is "00" to "99": the two digits of n at n*2.
const digitPairs = "00010203040506070809101112131415161718192021222324252627282930313233343536373839" +
	"40414243444546474849505152535455565758596061626364656667686970717273747576777879" +
	"8081828384858687888990919293949596979899"

// stamp is one second's RFC 3339 text in one zone: prefix is
// "2006-01-02T15:04:05", zone "Z" or "-07:00". fourDigitYear is false for
// years outside 0-9999, which slog does not write as RFC 3339.
type stamp struct {
	sec           int64
	loc           *time.Location
	prefix        string
	zone          string
	fourDigitYear bool
}

var lastStamp atomic.Pointer[stamp]

func newStamp(t time.Time, sec int64) *stamp {
	if y := t.Year(); y < 0 || y >= 10000 {
		return &stamp{sec: sec, loc: t.Location()}
	}
	whole := t.Round(0).Add(-time.Duration(t.Nanosecond())).Format(time.RFC3339Nano) // no fraction
	return &stamp{sec: sec, loc: t.Location(), prefix: whole[:19], zone: whole[19:], fourDigitYear: true}
}
