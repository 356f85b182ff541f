package logging

import (
	"bytes"
	"context"
	"encoding/json"
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
