// Package webhook is tollgate's Stripe webhook intake: it verifies each
// delivery's Stripe-Signature against every configured secret, makes each
// event id take effect once across all replicas (a Redis lock per event,
// then a long-lived done marker), and applies the event by re-reading the
// customer from Stripe inside the store's atomic update, so that duplicate,
// concurrent and out-of-order deliveries all end in the state Stripe holds
// now. Verified events can be forwarded to the application, re-signed, from
// a durable Redis queue (Forwarder).
//
// Answers (SPEC "Webhooks"): 200 for an event processed, already processed
// or of a type tollgate does not handle; 400 for a bad signature, a
// timestamp outside ±300 s, a malformed body or a content type other than
// application/json; 405 for a method other than POST; 413 for a body over
// 1 MiB; 500 when processing failed, and 503 while another delivery of the
// same event is still being processed, so that Stripe retries both.
package webhook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
	stripewebhook "github.com/stripe/stripe-go/v76/webhook"

	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/proxy"
)

// Limits of the endpoint.
const (
	// MaxBodyBytes caps a delivery; Stripe's events are far smaller.
	MaxBodyBytes = 1 << 20
	// Tolerance is how far a signature's timestamp may be from now, in
	// either direction (stripe-go checks only the past).
	Tolerance = 300 * time.Second
	// lockMargin is how much longer the processing lock lives than
	// processing may take, so it never expires under a live replica.
	lockMargin = 10 * time.Second
	// busyPoll is how often a duplicate delivery checks whether the
	// delivery processing its event has finished.
	busyPoll = 20 * time.Millisecond
)

// Options configure a Handler.
type Options struct {
	// Secrets are the endpoint's signing secrets (whsec_...); a signature
	// made with any of them is accepted (rotation). At least one.
	Secrets []string
	Store   entitlements.Store
	Ledger  Ledger
	// Stripe is where state is re-read from. Nil selects trusted payload
	// mode (no Stripe key: the state comes from the signed event).
	Stripe Stripe
	// Owners names the user tollgate's billing API created each Checkout
	// Session for. Nil: only a session's metadata.user_id links a user.
	Owners SessionOwners
	// Queue, when set, receives every verified event for forwarding.
	Queue *Queue
	// ProcessTimeout bounds processing one event (default 30s); the lock
	// lasts 10s longer.
	ProcessTimeout time.Duration
	// DedupTTL is how long a processed event id is remembered (default 720h).
	DedupTTL time.Duration
	// BusyWait is how long a delivery waits for another delivery of the
	// same event to finish before answering 503 (default 5s).
	BusyWait time.Duration
	// Deliveries, when set, records every delivery (and every replayed
	// event) for `tollgate events`; a failed write is logged and never
	// fails the delivery.
	Deliveries *DeliveryLog
	Metrics    *metrics.Metrics
	Logger     *slog.Logger
	Now        func() time.Time // nil: time.Now
}

// Handler serves the webhook endpoint.
type Handler struct {
	o       Options
	p       *processor
	log     *slog.Logger
	metrics *metrics.Metrics
	now     func() time.Time
}

// New returns a Handler.
func New(o Options) (*Handler, error) {
	if len(o.Secrets) == 0 || o.Store == nil || o.Ledger == nil {
		return nil, errors.New("webhook: Secrets, Store and Ledger are required")
	}
	h := &Handler{o: o, log: o.Logger, metrics: o.Metrics, now: o.Now}
	if h.now == nil {
		h.now = time.Now
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.metrics == nil {
		h.metrics = metrics.New()
	}
	h.p = newProcessor(o, h.log, h.metrics, h.now)
	h.initSeries()
	return h, nil
}

// outcome is the answer to one delivery and what is logged and counted.
type outcome struct {
	status int
	result string
	code   string // error code in the SPEC's error shape
	msg    string // sent to the caller
	err    error  // logged, never sent
	j      *job
}

// ServeHTTP answers one delivery, logs one line and counts it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	out := h.serve(w, r)
	typ := typeUnverified
	// request_id comes from r's context (internal/logging); naming it here
	// too wrote the key twice, which JSON pipelines refuse.
	attrs := []any{"status", out.status, "result", out.result}
	if out.j != nil {
		typ = typeLabel(out.j.typ)
		attrs = append(attrs, "event", out.j.id, "type", out.j.typ, "customer", out.j.customer)
	}
	h.metrics.WebhookEvents.WithLabelValues(typ, out.result).Inc()
	took := float64(time.Since(start).Microseconds()) / 1000
	attrs = append(attrs, "duration_ms", took)
	if out.err != nil {
		attrs = append(attrs, "err", out.err.Error())
	}
	level := slog.LevelInfo
	if out.status >= 500 {
		level = slog.LevelWarn
	}
	h.log.Log(r.Context(), level, "webhook delivery", attrs...)
	// Recorded before the answer, so a delivery Stripe saw answered is in
	// the log (unless the write failed, which only costs the entry).
	h.record(r.Context(), out, took)

	if out.status == http.StatusOK {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintf(w, "{\"received\":true,\"result\":%q}\n", out.result)
		return
	}
	if out.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", http.MethodPost)
	}
	e := &proxy.HTTPError{Status: out.status, Code: out.code, Msg: out.msg}
	if out.status == http.StatusServiceUnavailable {
		e.RetryAfter = 1
	}
	proxy.WriteError(w, e)
}

// record writes one delivery to the log. Deliveries that failed
// verification come from anyone, so only a few per second are recorded.
func (h *Handler) record(ctx context.Context, out outcome, tookMS float64) {
	l := h.o.Deliveries
	if l == nil {
		return
	}
	d := Delivery{Type: "unverified", Result: out.result, Status: out.status, Source: SourceWebhook, DurationMS: tookMS}
	if out.j != nil {
		d.Event, d.Type, d.Customer = out.j.id, out.j.typ, out.j.customer
	} else if !l.allowUnverified() {
		return
	}
	if out.err != nil {
		d.Error = out.err.Error()
	}
	writeLog(ctx, l, h.log, d)
}

// writeLog records d with a bounded wait; a failure is only logged.
func writeLog(ctx context.Context, l *DeliveryLog, log *slog.Logger, d Delivery) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), logWriteTimeout)
	defer cancel()
	if err := l.Record(lctx, d); err != nil {
		log.WarnContext(ctx, "webhook: delivery log not written", "event", d.Event, "err", err)
	}
}

// serve runs the numbered steps of one delivery.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request) outcome {
	// 1. Stripe POSTs; nothing else is an event.
	if r.Method != http.MethodPost {
		return invalid(http.StatusMethodNotAllowed, "method_not_allowed", "Only POST is allowed.", nil)
	}
	// 2. Stripe sends application/json; charset=utf-8.
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		return invalid(http.StatusBadRequest, "unsupported_content_type", "Content-Type must be application/json.", err)
	}
	// 3. The body, capped before it is read.
	body, err := readBody(w, r)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return invalid(http.StatusRequestEntityTooLarge, "body_too_large", "The body is larger than 1 MiB.", err)
		}
		return invalid(http.StatusBadRequest, "bad_request", "The body could not be read.", err)
	}
	// 4. The signature, against every secret, and the timestamp window.
	ev, err := h.verify(body, r.Header.Get("Stripe-Signature"))
	if err != nil {
		if errors.Is(err, ErrMalformed) {
			return invalid(http.StatusBadRequest, "malformed_event", "The event could not be parsed.", err)
		}
		return invalid(http.StatusBadRequest, "invalid_signature", "The Stripe-Signature header does not verify.", err)
	}
	// 5. What the event is about; in trusted payload mode, its object too.
	j, err := newJob(ev, body)
	if err == nil {
		err = h.p.apply.prepare(j)
	}
	if err != nil {
		return outcome{status: http.StatusBadRequest, result: resultInvalid, code: "malformed_event",
			msg: "The event could not be used.", err: err, j: &job{id: ev.ID, typ: string(ev.Type)}}
	}
	// 6. Exactly once: claim, apply, queue for forwarding, mark done.
	out := h.p.process(r.Context(), j)
	out.j = j
	return out
}

func invalid(status int, code, msg string, err error) outcome {
	return outcome{status: status, result: resultInvalid, code: code, msg: msg, err: err}
}

func checkContentType(ct string) error {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Errorf("content type %.60q: %w", ct, err)
	}
	if mt != "application/json" {
		return fmt.Errorf("content type %.60q is not application/json", mt)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return fmt.Errorf("charset %.20q is not utf-8", cs)
	}
	return nil
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > MaxBodyBytes {
		return nil, &http.MaxBytesError{Limit: MaxBodyBytes}
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
}

// verify checks the signature with every configured secret (stripe-go
// tries every v1 signature in the header against each) and accepts events
// of any API version: objects are re-fetched at the pinned one. A
// timestamp more than Tolerance in the future is refused as well as one in
// the past, so a captured delivery is replayable for at most 5 minutes by
// either clock.
func (h *Handler) verify(body []byte, header string) (*stripe.Event, error) {
	opts := stripewebhook.ConstructEventOptions{Tolerance: Tolerance, IgnoreAPIVersionMismatch: true}
	var err error
	for _, secret := range h.o.Secrets {
		var ev stripe.Event
		ev, err = stripewebhook.ConstructEventWithOptions(body, header, secret, opts)
		switch {
		case err == nil:
			ts, ok := signedAt(header)
			if !ok {
				return nil, errors.New("the signature header must carry exactly one t= timestamp")
			}
			if ts.Sub(h.now()) > Tolerance {
				return nil, fmt.Errorf("timestamp %s is more than %s in the future", ts.UTC().Format(time.RFC3339), Tolerance)
			}
			return &ev, nil
		case errors.Is(err, stripewebhook.ErrNoValidSignature):
			continue // perhaps another secret
		case errors.Is(err, stripewebhook.ErrNotSigned), errors.Is(err, stripewebhook.ErrInvalidHeader),
			errors.Is(err, stripewebhook.ErrTooOld):
			return nil, err // the same for every secret
		default:
			// The signature is good: the body is not an event.
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
	}
	return nil, err
}

// signedAt reads the t= timestamp of a Stripe-Signature header. A header
// with more than one t= is refused: stripe-go verifies against the last
// one, so reading another would let a signed future timestamp slip past
// the future-timestamp check.
func signedAt(header string) (time.Time, bool) {
	var at time.Time
	found := false
	for _, pair := range strings.Split(header, ",") {
		if v, ok := strings.CutPrefix(pair, "t="); ok {
			sec, err := strconv.ParseInt(v, 10, 64)
			if err != nil || found {
				return time.Time{}, false
			}
			at, found = time.Unix(sec, 0), true
		}
	}
	return at, found
}
