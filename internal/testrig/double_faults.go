package testrig

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Fault is an injected failure: the request is recorded but has no effect,
// and the client gets this Stripe-shaped error.
type Fault struct {
	Status  int
	Type    string // Stripe error type: api_error, invalid_request_error, ...
	Code    string // Stripe error code, e.g. rate_limit, lock_timeout; may be empty
	Message string

	// ShouldRetry is the Stripe-Should-Retry header: "true", "false", or
	// empty for none. stripe-go retries on "true" and never on "false";
	// without it, it retries 409, 503 and non-POST 5xx only.
	ShouldRetry string
	// RetryAfter, when positive, is sent as Retry-After (whole seconds).
	// Stripe does not document one, so FaultFor leaves it zero.
	RetryAfter time.Duration

	// Method and PathPrefix select the requests the fault applies to;
	// empty matches every request.
	Method     string
	PathPrefix string
}

// FaultFor returns the error Stripe answers with a given status:
//
//   - 500: api_error, Stripe-Should-Retry: true (a transient failure before
//     the request took effect, so even a POST is safe to retry).
//   - 503: api_error, Stripe-Should-Retry: true.
//   - 429: code rate_limit and no Stripe-Should-Retry, so stripe-go does not
//     retry (use Code "lock_timeout" and ShouldRetry "true" for the 429 it
//     does retry).
//   - 409: a lock_timeout conflict, Stripe-Should-Retry: true.
//   - 400, 401, 402, 404: invalid_request_error, authentication_error,
//     card_error, resource_missing; Stripe-Should-Retry: false.
//   - anything else: api_error without the header.
func FaultFor(status int) Fault {
	f := Fault{Status: status, Type: "api_error", Message: "testrig: injected failure (HTTP " + strconv.Itoa(status) + ")"}
	switch status {
	case http.StatusInternalServerError:
		f.Message = "An unknown error occurred"
		f.ShouldRetry = "true"
	case http.StatusServiceUnavailable:
		f.Message = "Stripe is temporarily unavailable. Please try again later."
		f.ShouldRetry = "true"
	case http.StatusTooManyRequests:
		f.Type, f.Code = "invalid_request_error", "rate_limit"
		f.Message = "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits."
	case http.StatusConflict:
		f.Type, f.Code = "invalid_request_error", "lock_timeout"
		f.Message = "This object cannot be accessed right now because another API request or Stripe process is currently accessing it."
		f.ShouldRetry = "true"
	case http.StatusBadRequest:
		f.Type, f.ShouldRetry = "invalid_request_error", "false"
	case http.StatusUnauthorized:
		f.Type, f.ShouldRetry = "authentication_error", "false"
		f.Message = "Invalid API Key provided: sk_test_****"
	case http.StatusPaymentRequired:
		f.Type, f.Code, f.ShouldRetry = "card_error", "card_declined", "false"
		f.Message = "Your card was declined."
	case http.StatusNotFound:
		f.Type, f.Code, f.ShouldRetry = "invalid_request_error", "resource_missing", "false"
	}
	return f
}

func (f Fault) matches(r *http.Request) bool {
	return (f.Method == "" || f.Method == r.Method) && strings.HasPrefix(r.URL.Path, f.PathPrefix)
}

func (f Fault) response() *Response {
	resp := ErrorResponse(f.Status, f.Type, f.Code, f.Message, "")
	if f.ShouldRetry != "" {
		resp.Header.Set("Stripe-Should-Retry", f.ShouldRetry)
	}
	if f.RetryAfter > 0 {
		secs := int64((f.RetryAfter + time.Second - 1) / time.Second)
		resp.Header.Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	return resp
}

type faultState struct {
	nextN int
	next  Fault

	rate    float64
	rateF   Fault
	rateRNG *rand.Rand

	timeoutRate float64
	timeoutRNG  *rand.Rand

	delay time.Duration
}

// seededRNG is a deterministic generator: the same seed gives the same
// sequence of decisions for the same sequence of requests.
func seededRNG(seed int64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), 0x7465737472696721))
}

// FailNext makes the next n requests fail with FaultFor(status), replacing
// any earlier FailNext.
func (d *StripeDouble) FailNext(n int, status int) {
	d.FailNextWith(n, FaultFor(status))
}

// FailNextWith makes the next n requests that f matches fail with f.
func (d *StripeDouble) FailNextWith(n int, f Fault) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.faults.nextN, d.faults.next = n, f
}

// FailRate makes a deterministic pseudo-random fraction (0..1) of requests
// fail with FaultFor(status); seed fixes which ones.
func (d *StripeDouble) FailRate(fraction float64, status int, seed int64) {
	d.FailRateWith(fraction, seed, FaultFor(status))
}

// FailRateWith is FailRate for requests that f matches, failing with f.
func (d *StripeDouble) FailRateWith(fraction float64, seed int64, f Fault) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.faults.rate, d.faults.rateF, d.faults.rateRNG = fraction, f, seededRNG(seed)
}

// TimeoutAfterRecord makes a deterministic pseudo-random fraction of
// requests take effect and then withhold their answer until the client gives
// up (bounded by 30 s, and released by Reset and at cleanup): "Stripe
// processed it but the client timed out". The outcome is saved under the
// request's Idempotency-Key first, so a retry with the same key gets the
// replayed answer.
func (d *StripeDouble) TimeoutAfterRecord(fraction float64, seed int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.faults.timeoutRate, d.faults.timeoutRNG = fraction, seededRNG(seed)
}

// Delay holds every answer back by dur before the request is processed.
func (d *StripeDouble) Delay(dur time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.faults.delay = dur
}

// Reset removes every injected fault and delay and releases held answers.
// Objects, recorded requests and meter events are kept.
func (d *StripeDouble) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.faults = faultState{}
	close(d.release)
	d.release = make(chan struct{})
}

func (d *StripeDouble) latency() (time.Duration, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.faults.delay, d.release
}

func (d *StripeDouble) takeFault(r *http.Request) (Fault, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fs := &d.faults
	if fs.nextN > 0 && fs.next.matches(r) {
		fs.nextN--
		return fs.next, true
	}
	if fs.rate > 0 && fs.rateF.matches(r) && fs.rateRNG.Float64() < fs.rate {
		return fs.rateF, true
	}
	return Fault{}, false
}

func (d *StripeDouble) takeTimeout() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.faults.timeoutRate > 0 && d.faults.timeoutRNG.Float64() < d.faults.timeoutRate
}
