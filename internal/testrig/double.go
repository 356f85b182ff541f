package testrig

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// stripeAPIVersion is the version stripe-go v76 pins; the double answers in
// its shapes.
const stripeAPIVersion = "2023-10-16"

// maxHold bounds how long a TimeoutAfterRecord response is held back when the
// client never gives up.
const maxHold = 30 * time.Second

// StripeDouble is a stateful, recording stand-in for Stripe's REST API,
// served by an httptest.Server. Tests put objects into it (PutCustomer,
// PutSubscription, ...), point a stripe-go client at URL, and then assert on
// Requests, MeterEvents and friends. It speaks form-encoded requests, answers
// JSON in Stripe's shapes and errors as {"error":{"type","code","message"}},
// replays POSTs that repeat an Idempotency-Key, and injects faults (see
// FailNext, FailRate, TimeoutAfterRecord, Delay).
//
// Unlike stripe-mock it does not validate request shapes beyond what its
// endpoints need. All methods are safe for concurrent use.
type StripeDouble struct {
	tb  testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	routes   []route
	now      func() time.Time
	seq      int64 // source of ids and list order
	requests []RecordedRequest
	idem     map[string]*idemEntry
	faults   faultState
	release  chan struct{} // closed to let held responses go
	objects  objectState
	meter    meterState
	billing  billingState
}

// RecordedRequest is one request the double received, recorded before any
// fault was applied.
type RecordedRequest struct {
	Method         string
	Path           string
	Form           url.Values // query and form body together
	IdempotencyKey string
	Header         http.Header
	Time           time.Time // by the double's clock (SetClock)
	Status         int       // status answered; 0 while not yet answered
}

// idemEntry is the saved outcome of a POST with an Idempotency-Key.
type idemEntry struct {
	fingerprint string
	resp        *Response // nil while the first request is executing
}

// NewStripeDouble starts a double, closed at cleanup (held responses are
// released first).
func NewStripeDouble(tb testing.TB) *StripeDouble {
	tb.Helper()
	d := &StripeDouble{
		tb:      tb,
		now:     time.Now,
		idem:    make(map[string]*idemEntry),
		release: make(chan struct{}),
		objects: newObjectState(),
		meter:   newMeterState(),
		billing: newBillingState(),
	}
	d.registerObjectRoutes()
	d.registerMeterRoutes()
	d.registerBillingRoutes()
	d.srv = httptest.NewServer(d)
	tb.Cleanup(func() {
		d.mu.Lock()
		close(d.release)
		d.mu.Unlock()
		d.srv.Close()
	})
	return d
}

// URL is the double's base URL, for StripeClient.
func (d *StripeDouble) URL() string { return d.srv.URL }

// SetClock replaces the clock used for created timestamps, meter event
// timestamp checks and the identifier dedup window (default time.Now).
func (d *StripeDouble) SetClock(now func() time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.now = now
}

func (d *StripeDouble) clock() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.now()
}

// Requests returns a copy of every request received so far, in arrival order.
func (d *StripeDouble) Requests() []RecordedRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]RecordedRequest, len(d.requests))
	copy(out, d.requests)
	return out
}

// Count reports how many requests had the given method ("" for any) and a
// path starting with pathPrefix.
func (d *StripeDouble) Count(method, pathPrefix string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, r := range d.requests {
		if (method == "" || r.Method == method) && strings.HasPrefix(r.Path, pathPrefix) {
			n++
		}
	}
	return n
}

// ServeHTTP answers one request in numbered steps.
func (d *StripeDouble) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// 1. Record it, whatever happens next.
	parseErr := r.ParseForm()
	idx := d.record(r)

	// 2. Decide the answer (latency, faults, idempotency, the endpoint).
	resp, hold := d.respond(r, parseErr)
	d.mu.Lock()
	d.requests[idx].Status = resp.Status
	release := d.release
	d.mu.Unlock()

	// 3. TimeoutAfterRecord: the effect is applied and saved for replay, but
	// the answer waits until the client gives up.
	if hold {
		wait(r.Context(), release, maxHold)
	}
	resp.write(w, r)
}

func (d *StripeDouble) record(r *http.Request) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.requests = append(d.requests, RecordedRequest{
		Method:         r.Method,
		Path:           r.URL.Path,
		Form:           cloneValues(r.Form),
		IdempotencyKey: r.Header.Get("Idempotency-Key"),
		Header:         r.Header.Clone(),
		Time:           d.now(),
	})
	return len(d.requests) - 1
}

func (d *StripeDouble) respond(r *http.Request, parseErr error) (resp *Response, hold bool) {
	if delay, release := d.latency(); delay > 0 {
		// The request is processed even if the client gives up meanwhile,
		// as Stripe would once it has received it.
		wait(context.Background(), release, delay)
	}
	if f, ok := d.takeFault(r); ok {
		return f.response(), false
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") && !strings.HasPrefix(r.Header.Get("Authorization"), "Basic ") {
		return ErrorResponse(http.StatusUnauthorized, "invalid_request_error", "",
			"You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth.", ""), false
	}
	if parseErr != nil {
		return ErrorResponse(http.StatusBadRequest, "invalid_request_error", "",
			"Invalid request body: "+parseErr.Error(), ""), false
	}
	return d.execute(r), d.takeTimeout()
}

// execute runs the endpoint once per Idempotency-Key: Stripe saves a POST's
// outcome under its key and replays it (with Idempotent-Replayed: true) for
// every repeat with the same parameters.
func (d *StripeDouble) execute(r *http.Request) *Response {
	key := r.Header.Get("Idempotency-Key")
	if r.Method != http.MethodPost || key == "" {
		return d.dispatch(r)
	}
	fp := fingerprint(r)
	d.mu.Lock()
	if e, ok := d.idem[key]; ok {
		d.mu.Unlock()
		switch {
		case e.fingerprint != fp:
			return ErrorResponse(http.StatusBadRequest, "idempotency_error", "",
				fmt.Sprintf("Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '%s' if you meant to execute a different request.", key), "")
		case e.resp == nil:
			return ErrorResponse(http.StatusConflict, "idempotency_error", "idempotency_key_in_use",
				"There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through): "+key+". Please try again later.", "")
		}
		replay := e.resp.clone()
		replay.Header.Set("Idempotent-Replayed", "true")
		return replay
	}
	e := &idemEntry{fingerprint: fp}
	d.idem[key] = e
	d.mu.Unlock()

	resp := d.dispatch(r)
	d.mu.Lock()
	e.resp = resp.clone()
	d.mu.Unlock()
	return resp
}

// fingerprint identifies a request's parameters for idempotency checks.
func fingerprint(r *http.Request) string {
	sum := sha256.Sum256([]byte(r.Method + " " + r.URL.Path + "?" + r.Form.Encode()))
	return hex.EncodeToString(sum[:])
}

// wait blocks until ctx is done, release is closed or d has passed.
func wait(ctx context.Context, release <-chan struct{}, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-release:
	case <-t.C:
	}
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// nextID returns a fresh id with the given prefix ("ent", "mev", ...).
func (d *StripeDouble) nextIDLocked(prefix string) string {
	d.seq++
	return fmt.Sprintf("%s_testrig%06d", prefix, d.seq)
}
