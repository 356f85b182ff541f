package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

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
