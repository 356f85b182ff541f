package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/config"
)

func TestRequestIDOnEveryContextLine(t *testing.T) {
	var buf bytes.Buffer
	log := New(config.Log{Level: "debug", Format: "json"}, &buf).With("component", "x")
	ctx := WithRequestID(context.Background(), "req-42")
	log.WarnContext(ctx, "with id")
	log.Info("without")
	dec := json.NewDecoder(&buf)
	for _, want := range []string{"req-42", ""} {
		var line map[string]any
		if err := dec.Decode(&line); err != nil {
			t.Fatal(err)
		}
		got, _ := line["request_id"].(string)
		if got != want || line["component"] != "x" {
			t.Errorf("line %v: request_id %q; want %q", line, got, want)
		}
	}
}

func TestLevelAndFormat(t *testing.T) {
	var buf bytes.Buffer
	log := New(config.Log{Level: "warn", Format: "text"}, &buf)
	log.Info("hidden")
	log.Warn("shown")
	if got := buf.String(); bytes.Contains([]byte(got), []byte("hidden")) || !bytes.Contains([]byte(got), []byte("level=WARN msg=shown")) {
		t.Errorf("text output = %q", got)
	}
}

// Issue 12: durations are written as Go duration strings ("1.5s"), not as
// slog's raw nanoseconds, and a request id already on the record is not
// added a second time.
func TestDurationsAndNoDuplicateRequestID(t *testing.T) {
	var buf bytes.Buffer
	log := New(config.Log{Level: "info", Format: "json"}, &buf)
	ctx := WithRequestID(context.Background(), "req-7")
	log.InfoContext(ctx, "x", "retry_in", 1500*time.Millisecond, "request_id", "req-7")
	raw := buf.String()
	if n := strings.Count(raw, `"request_id"`); n != 1 {
		t.Errorf("line %s has request_id %d times; want once", raw, n)
	}
	var line map[string]any
	if err := json.Unmarshal([]byte(raw), &line); err != nil {
		t.Fatal(err)
	}
	if got := line["retry_in"]; got != "1.5s" {
		t.Errorf("retry_in = %v (%T); want \"1.5s\"", got, got)
	}
}

// Durations are strings wherever they are: in a group, in a logger's
// attributes, behind a LogValuer.
func TestDurationsEverywhere(t *testing.T) {
	var buf bytes.Buffer
	log := New(config.Log{Level: "info", Format: "json"}, &buf).With("ttl", 2*time.Second)
	log.Info("x", slog.Group("g", "wait", 250*time.Millisecond), "lazy", lazyDuration(time.Minute))
	var line struct {
		TTL  any                `json:"ttl"`
		G    struct{ Wait any } `json:"g"`
		Lazy any                `json:"lazy"`
	}
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	for _, tt := range []struct {
		name string
		got  any
		want string
	}{{"ttl", line.TTL, "2s"}, {"g.wait", line.G.Wait, "250ms"}, {"lazy", line.Lazy, "1m0s"}} {
		if tt.got != tt.want {
			t.Errorf("%s = %v (%T); want %q", tt.name, tt.got, tt.got, tt.want)
		}
	}
}

type lazyDuration time.Duration

func (d lazyDuration) LogValue() slog.Value { return slog.DurationValue(time.Duration(d)) }

// BenchmarkRequestLine is the proxy's access line (one per request, at
// info), written as the proxy writes it: through LogRequest's own encoder
// (encoder) and as a slog record (slog), which any other handler gets.
func BenchmarkRequestLine(b *testing.B) {
	h := New(config.Log{Level: "info", Format: "json"}, io.Discard).Handler()
	ctx := WithRequestID(context.Background(), "0123456789abcdef0123456789abcdef")
	l := RequestLine{Method: "GET", Path: "/api/bench", Route: "/api/**", Decision: "allowed", Status: 200,
		Duration: 123 * time.Microsecond, RequestID: "0123456789abcdef0123456789abcdef"}
	b.Run("encoder", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := h.(RequestLogger).LogRequest(ctx, time.Now(), l); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("slog", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := h.Handle(ctx, requestRecord(time.Now(), l)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
