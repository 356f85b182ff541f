package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/config"
)

// slogLine is the line slog's own JSON handler writes for l's record,
// through contextHandler as New's loggers have it: the reference.
func slogLine(t testing.TB, at time.Time, l RequestLine) string {
	t.Helper()
	var buf bytes.Buffer
	h := slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})
	if err := (contextHandler{Handler: h}).Handle(context.Background(), requestRecord(at, l)); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// encoderLine is the line LogRequest writes for l on a JSON logger of
// New's, and whether its own encoder wrote it.
func encoderLine(t testing.TB, at time.Time, l RequestLine) (string, bool) {
	t.Helper()
	var buf bytes.Buffer
	h := New(config.Log{Level: "info", Format: "json"}, &buf).Handler()
	if err := h.(RequestLogger).LogRequest(context.Background(), at, l); err != nil {
		t.Fatal(err)
	}
	_, own := appendRequestLine(nil, at, l)
	return buf.String(), own
}

// The access line the encoder writes is byte for byte the line slog
// writes for the same record, and the encoder does write the lines of
// ordinary requests (not only hand them back to slog).
func TestRequestLineIsSlogs(t *testing.T) {
	at := time.Date(2026, 12, 2, 15, 4, 5, 123456789, time.UTC)
	base := RequestLine{Method: "GET", Path: "/api/items/7", Route: "/api/**", Decision: "allowed", Status: 200,
		Duration: 1234 * time.Microsecond, RequestID: "0123456789abcdef0123456789abcdef"}
	type tc struct {
		name string
		mod  func(*RequestLine, *time.Time)
		own  bool // the encoder writes it (not slog)
	}
	cases := []tc{
		{"plain", func(*RequestLine, *time.Time) {}, true},
		{"zero duration", func(l *RequestLine, _ *time.Time) { l.Duration = 0 }, true},
		{"sub-microsecond", func(l *RequestLine, _ *time.Time) { l.Duration = 999 }, true},
		{"1us", func(l *RequestLine, _ *time.Time) { l.Duration = time.Microsecond }, true},
		{"10us", func(l *RequestLine, _ *time.Time) { l.Duration = 10 * time.Microsecond }, true},
		{"100ms", func(l *RequestLine, _ *time.Time) { l.Duration = 100 * time.Millisecond }, true},
		{"1.2ms", func(l *RequestLine, _ *time.Time) { l.Duration = 1200 * time.Microsecond }, true},
		{"just below the bound", func(l *RequestLine, _ *time.Time) { l.Duration = (maxLineMicros - 1) * time.Microsecond }, true},
		{"at the bound", func(l *RequestLine, _ *time.Time) { l.Duration = maxLineMicros * time.Microsecond }, false},
		{"longest duration", func(l *RequestLine, _ *time.Time) { l.Duration = 1<<63 - 1 }, false},
		{"negative duration", func(l *RequestLine, _ *time.Time) { l.Duration = -5 * time.Millisecond }, false},
		{"client closed", func(l *RequestLine, _ *time.Time) { l.Decision, l.Status = "client_closed", 499 }, true},
		{"empty strings", func(l *RequestLine, _ *time.Time) { *l = RequestLine{} }, true},
		{"html characters", func(l *RequestLine, _ *time.Time) { l.Path = "/a/<b>&c'd" }, true},
		{"quote", func(l *RequestLine, _ *time.Time) { l.Path = `/a"b` }, false},
		{"backslash", func(l *RequestLine, _ *time.Time) { l.Route = `/a\b` }, false},
		{"newline", func(l *RequestLine, _ *time.Time) { l.Path = "/a\nb" }, false},
		{"DEL", func(l *RequestLine, _ *time.Time) { l.Path = "/a\x7fb" }, false},
		{"UTF-8", func(l *RequestLine, _ *time.Time) { l.Path = "/caf\u00e9/\u2028" }, false},
		{"invalid UTF-8", func(l *RequestLine, _ *time.Time) { l.Method = "G\xffT" }, false},
		{"local time zone", func(_ *RequestLine, at *time.Time) {
			*at = at.In(time.FixedZone("X", -(3*3600 + 30*60)))
		}, true},
		{"monotonic clock reading", func(_ *RequestLine, at *time.Time) { *at = time.Now() }, true},
		{"whole second", func(_ *RequestLine, at *time.Time) { *at = at.Truncate(time.Second) }, true},
		{"year 10000", func(_ *RequestLine, at *time.Time) { *at = at.AddDate(8000, 0, 0) }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, when := base, at
			c.mod(&l, &when)
			got, own := encoderLine(t, when, l)
			if want := slogLine(t, when, l); got != want {
				t.Errorf("encoder wrote\n%s; slog writes\n%s", got, want)
			}
			if own != c.own {
				t.Errorf("written by the encoder: %v; want %v", own, c.own)
			}
		})
	}
}

// Every duration up to the bound is written as encoding/json writes its
// float64 milliseconds: a sweep of the microseconds' last digits and
// magnitudes.
func TestRequestLineDurations(t *testing.T) {
	at := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	for mag := int64(1); mag < maxLineMicros; mag *= 10 {
		for _, us := range []int64{mag - 1, mag, mag + 1, mag + 7, 3*mag + 999, 9*mag + 1} {
			if us < 0 || us >= maxLineMicros {
				continue
			}
			l := RequestLine{Duration: time.Duration(us) * time.Microsecond}
			got, own := encoderLine(t, at, l)
			if want := slogLine(t, at, l); got != want || !own {
				t.Fatalf("%d µs: encoder (own %v) wrote\n%s; slog writes\n%s", us, own, got, want)
			}
		}
	}
}

// FuzzRequestLine: whatever the strings and the duration, LogRequest
// writes what slog writes.
func FuzzRequestLine(f *testing.F) {
	f.Add("GET", "/api/x", "/api/**", "allowed", 200, int64(1234567), "rid", int64(0), int32(0))
	f.Add("G\"T", "/a\\b\n", "\u2028", "\xff", -1, int64(-1), "", int64(1<<62), int32(-12600))
	f.Add("GET", "/", "/", "allowed", 200, int64(1000), "r", int64(1764687845000000000), int32(19800+17))
	f.Fuzz(func(t *testing.T, method, path, route, decision string, status int, d int64, rid string, unixNano int64, zone int32) {
		at := time.Unix(0, unixNano).In(time.FixedZone("", int(zone%(18*3600))))
		if zone == 0 {
			at = at.UTC()
		}
		l := RequestLine{Method: method, Path: path, Route: route, Decision: decision, Status: status, Duration: time.Duration(d), RequestID: rid}
		if got, want := func() string { s, _ := encoderLine(t, at, l); return s }(), slogLine(t, at, l); got != want {
			t.Errorf("encoder wrote\n%s; slog writes\n%s", got, want)
		}
	})
}

// Lines logged within one second share its formatted stamp, and the next
// second, or another zone, gets its own: the same times as slog writes.
func TestRequestLineTimes(t *testing.T) {
	base := time.Date(2026, 12, 2, 23, 59, 58, 0, time.UTC)
	berlin := time.FixedZone("CET", 3600)
	l := RequestLine{Method: "GET", Path: "/", Route: "/", Decision: "allowed", Status: 200, RequestID: "r"}
	for _, at := range []time.Time{
		base, base.Add(1), base.Add(999_999_999), base.Add(time.Second), base.Add(time.Second + 10_000),
		base.Add(2 * time.Second).In(berlin), base.Add(2 * time.Second), base.Add(2*time.Second + 120_000_000).In(berlin),
		base.Add(123_456_789), base.Add(987_654_321), base.Add(100_000_000), base.Add(500_000_010), base.Add(20), base.Add(90_807_060),
		time.Now(), time.Now().Local(),
	} {
		got, own := encoderLine(t, at, l)
		if want := slogLine(t, at, l); got != want || !own {
			t.Errorf("%v: encoder (own %v) wrote\n%s; slog writes\n%s", at, own, got, want)
		}
	}
}

// Access lines and slog's lines share one writer and never interleave:
// each line written concurrently is a whole JSON object.
func TestRequestLinesDoNotInterleave(t *testing.T) {
	var buf bytes.Buffer
	log := New(config.Log{Level: "info", Format: "json"}, &buf)
	rl := log.Handler().(RequestLogger)
	const each = 200
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range each {
				if g%2 == 0 {
					_ = rl.LogRequest(context.Background(), time.Now(), RequestLine{Method: "GET", Path: strings.Repeat("/p", 300), Status: 200, RequestID: fmt.Sprint(g, "-", i)})
				} else {
					log.Info("other", "n", i, "pad", strings.Repeat("x", 600))
				}
			}
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 4*each {
		t.Fatalf("%d lines; want %d", len(lines), 4*each)
	}
	requests := 0
	for _, s := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatalf("line %q: %v", s, err)
		}
		if m["msg"] == "request" {
			requests++
		}
	}
	if requests != 2*each {
		t.Errorf("%d access lines; want %d", requests, 2*each)
	}
}

// A text logger, or one with attributes of its own, has no encoder: its
// access line is slog's, in its format, with its attributes; a handler
// that is not New's gets the same fields as a slog record.
func TestRequestLineOtherLoggers(t *testing.T) {
	l := RequestLine{Method: "GET", Path: "/x", Route: "/x", Decision: "allowed", Status: 200, Duration: 1500 * time.Microsecond, RequestID: "r1"}
	var text bytes.Buffer
	h := New(config.Log{Level: "info", Format: "text"}, &text).Handler()
	if err := LogRequest(context.Background(), h, time.Now(), l); err != nil {
		t.Fatal(err)
	}
	if got := text.String(); !strings.Contains(got, "msg=request method=GET path=/x route=/x decision=allowed status=200 duration_ms=1.5 request_id=r1") {
		t.Errorf("text line = %q", got)
	}
	var js bytes.Buffer
	h = New(config.Log{Level: "info", Format: "json"}, &js).With("component", "proxy").Handler()
	if err := LogRequest(context.Background(), h, time.Now(), l); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(js.Bytes(), &m); err != nil || m["component"] != "proxy" || m["duration_ms"] != 1.5 || m["request_id"] != "r1" {
		t.Errorf("line %s (%v); want component proxy, duration_ms 1.5, request_id r1", js.String(), err)
	}
	var other bytes.Buffer
	at := time.Date(2026, 12, 2, 1, 2, 3, 0, time.UTC)
	if err := LogRequest(context.Background(), slog.NewJSONHandler(&other, nil), at, l); err != nil {
		t.Fatal(err)
	}
	if want := slogLine(t, at, l); other.String() != want {
		t.Errorf("another handler's line\n%s; want\n%s", other.String(), want)
	}
}

// syncBuffer is a bytes.Buffer that counts its Writes, safe for the
// flush timer's goroutine.
type syncBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.writes++
	return b.buf.Write(p)
}

func (b *syncBuffer) state() (string, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String(), b.writes
}

func accessLine(i int) RequestLine {
	return RequestLine{Method: "GET", Path: "/p", Route: "/p", Decision: "allowed", Status: 200, RequestID: fmt.Sprint("r", i)}
}

// Access lines are batched: many requests' lines in one write, written
// by the flush timer within the interval with nothing else logged.
func TestRequestLinesBatched(t *testing.T) {
	var out syncBuffer
	log := New(config.Log{Level: "info", Format: "json", FlushInterval: 50 * time.Millisecond}, &out)
	rl := log.Handler().(RequestLogger)
	for i := range 10 {
		if err := rl.LogRequest(context.Background(), time.Now(), accessLine(i)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, writes := out.state()
		if strings.Count(s, "\n") == 10 {
			if writes != 1 {
				t.Errorf("10 lines in %d writes; want 1", writes)
			}
			break
		}
		if s != "" || time.Now().After(deadline) {
			t.Fatalf("after %d writes: %q; want the 10 lines in one write", writes, s)
		}
		time.Sleep(time.Millisecond) // polling for the timer's write
	}
	// The timer is armed again by the next first line.
	if err := rl.LogRequest(context.Background(), time.Now(), accessLine(10)); err != nil {
		t.Fatal(err)
	}
	for s, _ := out.state(); !strings.Contains(s, `"request_id":"r10"`); s, _ = out.state() {
		if time.Now().After(deadline) {
			t.Fatal("the second batch was never written")
		}
		time.Sleep(time.Millisecond)
	}
}

// Any other line is written at once, after the access lines before it;
// a full batch and Flush write without waiting for the timer.
func TestRequestLinesOrderAndBounds(t *testing.T) {
	var out syncBuffer
	log := New(config.Log{Level: "info", Format: "json", FlushInterval: time.Hour}, &out)
	rl := log.Handler().(RequestLogger)
	_ = rl.LogRequest(context.Background(), time.Now(), accessLine(1))
	if s, _ := out.state(); s != "" {
		t.Fatalf("an access line was written at once: %q", s)
	}
	log.Warn("upstream failed")
	s, writes := out.state()
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"r1"`) || !strings.Contains(lines[1], "upstream failed") || writes != 1 {
		t.Fatalf("after a warning, %d writes: %q; want the access line, then the warning, in one write", writes, s)
	}

	// A full batch is written by the line that fills it.
	n := 0
	for ; ; n++ {
		_ = rl.LogRequest(context.Background(), time.Now(), accessLine(n))
		if _, w := out.state(); w > writes {
			break
		}
		if n > 2*maxBatch/100 {
			t.Fatalf("%d lines held in a batch of at most %d bytes", n, maxBatch)
		}
	}
	s, _ = out.state()
	if got := len(s) - len(lines[0]) - len(lines[1]) - 2; got < maxBatch || got > maxBatch+512 {
		t.Errorf("a full batch wrote %d bytes; want %d to one line more", got, maxBatch)
	}
	_ = rl.LogRequest(context.Background(), time.Now(), accessLine(-1))
	if err := Flush(log); err != nil {
		t.Fatal(err)
	}
	if s, _ := out.state(); !strings.HasSuffix(s, `"request_id":"r-1"}`+"\n") {
		t.Errorf("Flush left the last line unwritten: ...%q", s[max(0, len(s)-80):])
	}
	if err := Flush(log); err != nil { // nothing held: no write
		t.Fatal(err)
	}
}

// With log.flush_interval 0 every access line is its own write.
func TestRequestLinesUnbatched(t *testing.T) {
	var out syncBuffer
	rl := New(config.Log{Level: "info", Format: "json"}, &out).Handler().(RequestLogger)
	for i := range 3 {
		_ = rl.LogRequest(context.Background(), time.Now(), accessLine(i))
		if s, w := out.state(); w != i+1 || strings.Count(s, "\n") != i+1 {
			t.Fatalf("after line %d: %d writes, %q", i, w, s)
		}
	}
}

// plain, eight bytes at a time, agrees with the byte-by-byte rule for every
// byte value at every place in a word and in the tail.
func TestPlain(t *testing.T) {
	for c := 0; c < 256; c++ {
		want := c >= 0x20 && c <= 0x7e && c != '"' && c != '\\'
		for at := range 19 {
			s := []byte(strings.Repeat("a", 19))
			s[at] = byte(c)
			if got := plain(string(s)); got != want {
				t.Fatalf("plain with %#x at %d = %v; want %v", c, at, got, want)
			}
		}
	}
}

// BenchmarkPlain is the check of an access line's five strings.
func BenchmarkPlain(b *testing.B) {
	strs := []string{"GET", "/api/bench", "/api/**", "allowed", "0123456789abcdef0123456789abcdef"}
	for b.Loop() {
		for _, s := range strs {
			if !plain(s) {
				b.Fatal(s)
			}
		}
	}
}
