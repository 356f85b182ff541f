// Package stripeapi builds the one stripe-go v76 client every part of
// tollgate uses, with bounded timeouts, stripe-go's own retries (which reuse
// one Idempotency-Key) and per-operation metrics; no part builds its own.
package stripeapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/metrics"
)

// New returns a client for cfg. With cfg.APIBase set, every call goes there
// (stripe-mock, a test double) instead of api.stripe.com.
func New(cfg config.Stripe, m *metrics.Metrics, log *slog.Logger) *client.API {
	hc := &http.Client{
		Timeout:   cfg.Timeout,
		Transport: &instrumented{next: http.DefaultTransport, m: m},
	}
	var logger stripe.LeveledLoggerInterface = &stripe.LeveledLogger{Level: stripe.LevelNull}
	if log != nil {
		logger = slogAdapter{log}
	}
	bc := &stripe.BackendConfig{
		HTTPClient:        hc,
		MaxNetworkRetries: stripe.Int64(int64(cfg.MaxNetworkRetries)),
		LeveledLogger:     logger,
		EnableTelemetry:   stripe.Bool(false),
	}
	if cfg.APIBase != "" {
		bc.URL = stripe.String(cfg.APIBase)
	}
	api := &client.API{}
	api.Init(cfg.SecretKey, &stripe.Backends{
		API:     redactingBackend{stripe.GetBackendWithConfig(stripe.APIBackend, bc)},
		Connect: redactingBackend{stripe.GetBackendWithConfig(stripe.ConnectBackend, bc)},
		Uploads: redactingBackend{stripe.GetBackendWithConfig(stripe.UploadsBackend, bc)},
	})
	return api
}

// slogAdapter sends stripe-go's own log lines to the structured log at
// debug level: every failure they describe is also returned to, and
// logged by, the caller with its context. Its lines are rebuilt, never
// passed through: errors are described (Describe), a response body is
// cut down to its object type and ids, and a line of a kind not listed
// here (a future stripe-go) is logged without its arguments. Stripe's
// bodies hold customers' emails, names, addresses and phone numbers.
type slogAdapter struct{ log *slog.Logger }

func (a slogAdapter) Debugf(format string, v ...any) { a.emit(format, v) }
func (a slogAdapter) Infof(format string, v ...any)  { a.emit(format, v) }
func (a slogAdapter) Warnf(format string, v ...any)  { a.emit(format, v) }
func (a slogAdapter) Errorf(format string, v ...any) { a.emit(format, v) }

// stripeGoLines are the stripe-go v76 log formats whose arguments are
// safe once errors are described: methods, hosts, paths (ids only, no
// query), durations, retry counts and reasons, statuses.
var stripeGoLines = map[string]bool{
	"Requesting %v %v%v":                                        true,
	"Request completed in %v (retry: %v)":                       true,
	"Not retrying request: %v":                                  true,
	"Initiating retry %v for request %v %v%v after sleeping %v": true,
	"User-compelled request error from Stripe (status %v): %v":  true,
	"Request error from Stripe (status %v): %v":                 true,
	"Error decoding error from Stripe: %v":                      true,
	"Request failed with error: %v":                             true,
	"Cannot create Stripe request: %v":                          true,
	"Unable to encode client telemetry: %v":                     true,
	"%s":                                                        true, // an error's text
}

func (a slogAdapter) emit(format string, v []any) {
	ctx := context.Background()
	if !a.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	if format == "Response: %s" && len(v) == 1 {
		body, _ := v[0].(string)
		a.log.Log(ctx, slog.LevelDebug, "stripe-go: response", summarize(body)...)
		return
	}
	if !stripeGoLines[format] {
		a.log.Log(ctx, slog.LevelDebug, "stripe-go: "+format+" (arguments withheld)")
		return
	}
	args := make([]any, len(v))
	for i, x := range v {
		switch x := x.(type) {
		case error:
			args[i] = Describe(x)
		case string, int, int64, bool, time.Duration:
			args[i] = x
		default:
			args[i] = fmt.Sprintf("(%T)", x)
		}
	}
	msg := fmt.Sprintf(format, args...)
	if format == "%s" {
		msg = Describe(errors.New(msg))
	}
	a.log.Log(ctx, slog.LevelDebug, "stripe-go: "+msg)
}

type instrumented struct {
	next http.RoundTripper
	m    *metrics.Metrics
}

func (t *instrumented) RoundTrip(r *http.Request) (*http.Response, error) {
	op := Operation(r.Method, r.URL.Path)
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
	code := "0"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	if t.m != nil {
		t.m.StripeRequests.WithLabelValues(op, code).Inc()
		t.m.StripeRequestDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	}
	return resp, err
}

// Stripe object ids look like cus_NffrFeUfNV2Hib: a short prefix, '_', and
// random base62 (so with digits or capitals, unlike "meter_events"). In an
// operation label each becomes {id} so that the label set stays bounded.
var idSegment = regexp.MustCompile(`^[a-z]{2,8}_[A-Za-z0-9_]*[A-Z0-9][A-Za-z0-9_]*$`)

// Operation is the metrics label of a Stripe call: "GET /v1/customers/{id}".
func Operation(method, path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if idSegment.MatchString(s) {
			segs[i] = "{id}"
		}
	}
	return method + " " + strings.Join(segs, "/")
}

// IsMissing reports Stripe's answer for an object that does not exist
// (404, or resource_missing on a parameter).
func IsMissing(err error) bool {
	var se *stripe.Error
	return errors.As(err, &se) && (se.HTTPStatusCode == http.StatusNotFound || se.Code == stripe.ErrorCodeResourceMissing)
}

// Time turns a Stripe timestamp (Unix seconds, 0 for none) into a UTC
// time, the zero time for none.
func Time(sec int64) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0).UTC()
}
