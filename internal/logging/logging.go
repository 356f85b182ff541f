// Package logging builds tollgate's structured logger (log/slog, JSON by
// default) and carries the request id through contexts, so that every line
// logged while serving a request, in any package, names that request.
package logging

import (
	"context"
	"io"
	"log/slog"

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
	opts := &slog.HandlerOptions{Level: lvl, ReplaceAttr: durationString}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if c.Format == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(contextHandler{h})
}

// contextHandler adds request_id to every record logged with a context
// that carries one (log.InfoContext(ctx, ...)).
type contextHandler struct{ slog.Handler }

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" && !hasAttr(r, "request_id") {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

// hasAttr reports whether a record already carries key, so the request id
// is never written twice (Elasticsearch and other JSON pipelines refuse a
// line with a duplicate key).
func hasAttr(r slog.Record, key string) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Key == key
		return !found
	})
	return found
}

// durationString writes a time.Duration as "1.5s" rather than slog's raw
// nanoseconds (1500000000), which read as seconds to a human and as a
// plain number to a log pipeline.
func durationString(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

func (h contextHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(as)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}
