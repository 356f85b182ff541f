// Package logging builds tollgate's structured logger (log/slog, JSON by
// default) and carries the request id through contexts, so that every line
// logged while serving a request, in any package, names that request.
package logging

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/tollgate-dev/tollgate/config"
)

// RequestIDKey is the context key RequestID looks up. Its value is the id
// (a string, as WithRequestID stores it) or an IDCarrier: a context type
// of its own can answer for it without the layer WithRequestID adds (the
// proxy's per-request context does, one allocation fewer per request).
type RequestIDKey struct{}

// IDCarrier is a RequestIDKey value that knows its request's id.
type IDCarrier interface{ RequestID() string }

// WithRequestID returns ctx carrying the request id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, RequestIDKey{}, id)
}

// RequestID returns the request id carried by ctx, or "".
func RequestID(ctx context.Context) string {
	switch v := ctx.Value(RequestIDKey{}).(type) {
	case string:
		return v
	case IDCarrier:
		return v.RequestID()
	}
	return ""
}

// New returns the logger for a log config, writing to w.
func New(c config.Log, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level)) // validated by config
	// No ReplaceAttr: with one, slog passes every attribute through it and
	// writes the level through encoding/json, which more than doubled the
	// cost of a line (issue 13: the access line is on every request).
	// contextHandler writes durations as strings instead.
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "text" {
		return slog.New(contextHandler{Handler: slog.NewTextHandler(w, opts)})
	}
	// The JSON handler and the access-line encoder (LogRequest) write
	// through one lock, a whole line a Write, so their lines never
	// interleave; access lines are batched (log.flush_interval).
	lw := &lineWriter{w: w, interval: c.FlushInterval}
	return slog.New(contextHandler{Handler: slog.NewJSONHandler(lw, opts), lines: lw})
}

// Flush writes the access lines l's handler holds, if any. The commands
// call it before they exit; nothing else needs to (see lineWriter).
func Flush(l *slog.Logger) error {
	if h, ok := l.Handler().(contextHandler); ok && h.lines != nil {
		return h.lines.Flush()
	}
	return nil
}

// maxBatch is the most access-line bytes a lineWriter holds: it writes
// them when a line takes it past.
const maxBatch = 32 << 10

// lineWriter serialises the Writes of the handlers that share it, and
// batches access lines: one write for many requests' lines instead of a
// system call per request (issue 13: with the line written at once, the
// call cost more than tollgate's whole gated path). A batch is written
// when it reaches maxBatch, before any other line (so lines stay in
// order and a warning is never held back), at Flush, and at most
// interval after its first line, by a timer armed for that line (no
// goroutine waits in between).
type lineWriter struct {
	mu       sync.Mutex
	w        io.Writer
	interval time.Duration // 0: every line at once
	batch    []byte
	timer    *time.Timer // armed while batch holds lines
}

// Write writes p, one of slog's lines, after the batch, in one write.
func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.batch) == 0 {
		return w.w.Write(p)
	}
	w.batch = append(w.batch, p...)
	if err := w.flushLocked(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// appendLine encodes l, logged at t, straight into the batch, under the
// lock: no buffer of its own and no copy of the line (issue 13). Unbatched
// (interval 0), the line is written at once and the batch's memory kept
// for the next. It reports false, having written nothing, when
// appendRequestLine declines l.
func (w *lineWriter) appendLine(t time.Time, l RequestLine) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(w.batch)
	b, ok := appendRequestLine(w.batch, t, l)
	if !ok {
		return false, nil
	}
	if w.interval <= 0 { // the batch is always empty then
		_, err := w.w.Write(b)
		w.batch = b[:0]
		return true, err
	}
	w.batch = b
	return true, w.addedLocked(n)
}

// addedLocked writes the batch when a line took it to maxBatch, and arms
// the timer for the batch's first line (the batch held before bytes).
func (w *lineWriter) addedLocked(before int) error {
	if len(w.batch) >= maxBatch {
		return w.flushLocked()
	}
	if before == 0 {
		if w.timer == nil {
			w.timer = time.AfterFunc(w.interval, func() { _ = w.Flush() })
		} else {
			w.timer.Reset(w.interval)
		}
	}
	return nil
}

// Flush writes the batch.
func (w *lineWriter) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushLocked()
}

func (w *lineWriter) flushLocked() error {
	if len(w.batch) == 0 {
		return nil
	}
	if w.timer != nil {
		w.timer.Stop()
	}
	_, err := w.w.Write(w.batch)
	if cap(w.batch) > 2*maxBatch {
		w.batch = nil // a long slog line grew it: do not keep that
	} else {
		w.batch = w.batch[:0]
	}
	return err
}

// contextHandler adds request_id to every record logged with a context
// that carries one (log.InfoContext(ctx, ...)), and writes every
// time.Duration as "1.5s" rather than slog's raw nanoseconds
// (1500000000), which read as seconds to a human and as a plain number to
// a log pipeline.
type contextHandler struct {
	slog.Handler
	// lines is the JSON handler's writer, for LogRequest's own encoder;
	// nil for text and for a handler with attributes or groups of its
	// own (WithAttrs, WithGroup), whose lines only slog writes.
	lines *lineWriter
}

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	hasID, durations := false, false
	r.Attrs(func(a slog.Attr) bool {
		hasID = hasID || a.Key == "request_id"
		durations = durations || hasDuration(a.Value)
		return true
	})
	if durations {
		r = withDurationStrings(r)
	}
	// The id is never written twice (Elasticsearch and other JSON
	// pipelines refuse a line with a duplicate key).
	if !hasID {
		if id := RequestID(ctx); id != "" {
			r.AddAttrs(slog.String("request_id", id))
		}
	}
	return h.Handler.Handle(ctx, r)
}

// hasDuration reports whether v is, or holds in a group, a duration.
func hasDuration(v slog.Value) bool {
	switch v.Kind() {
	case slog.KindDuration:
		return true
	case slog.KindLogValuer:
		return hasDuration(v.Resolve())
	case slog.KindGroup:
		for _, a := range v.Group() {
			if hasDuration(a.Value) {
				return true
			}
		}
	}
	return false
}

// durationString is a with every duration in it written as a string.
func durationString(a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindDuration:
		return slog.String(a.Key, a.Value.Duration().String())
	case slog.KindLogValuer:
		a.Value = a.Value.Resolve()
		if hasDuration(a.Value) {
			return durationString(a)
		}
	case slog.KindGroup:
		g := a.Value.Group()
		out := make([]slog.Attr, len(g))
		for i, x := range g {
			out[i] = durationString(x)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	}
	return a
}

func withDurationStrings(r slog.Record) slog.Record {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(durationString(a))
		return true
	})
	return out
}

func (h contextHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = durationString(a)
	}
	return contextHandler{Handler: h.Handler.WithAttrs(out)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{Handler: h.Handler.WithGroup(name)}
}
