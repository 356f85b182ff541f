package proxy

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// HTTPError is an answer tollgate gives itself instead of the upstream's.
// Msg is what the client reads; Err is the cause, logged and never sent, so
// JWT, Redis and Stripe details cannot leak to callers.
type HTTPError struct {
	Status int
	Code   string // machine-readable, e.g. subscription_required
	Msg    string
	Extra  map[string]any // upgrade_url, limit, used, ...
	// RetryAfter, when positive, is sent as Retry-After in seconds.
	RetryAfter int
	// Header holds further fields of the answer (RateLimit on a 429).
	Header http.Header
	Err    error
}

func (e *HTTPError) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Err.Error()
	}
	return e.Code
}

func (e *HTTPError) Unwrap() error { return e.Err }

// WithCause returns a copy of a shared answer carrying the cause to log.
func (e *HTTPError) WithCause(err error) *HTTPError {
	c := *e
	c.Err = err
	return &c
}

// Common answers.
var (
	errBadPath = &HTTPError{Status: http.StatusBadRequest, Code: "bad_request",
		Msg: "The request path is not allowed: it holds encoded separators, invalid escapes or reserved characters."}
	errBadMethod = &HTTPError{Status: http.StatusBadRequest, Code: "bad_request",
		Msg: "The request method must be upper case."}
	errNoRoute = &HTTPError{Status: http.StatusForbidden, Code: "no_route",
		Msg: "No route allows this request."}
	errUnauthenticated = &HTTPError{Status: http.StatusUnauthorized, Code: "unauthenticated",
		Msg: "A valid bearer token is required."}
	// errNoCustomerToBill answers a metered route's caller who has no
	// Stripe customer: there is nobody to bill, and forwarding unbilled
	// would make the route free (issue 12 review).
	errNoCustomerToBill = &HTTPError{Status: http.StatusPaymentRequired, Code: "subscription_required",
		Msg: "This route is billed by usage; subscribe first."}
	errUnavailable = &HTTPError{Status: http.StatusServiceUnavailable, Code: "entitlements_unavailable",
		Msg: "Entitlements cannot be checked right now; try again shortly."}
	errUpstream = &HTTPError{Status: http.StatusBadGateway, Code: "upstream_unavailable",
		Msg: "The application did not answer."}
	errBadSwitch = &HTTPError{Status: http.StatusBadGateway, Code: "upgrade_refused",
		Msg: "The application switched to a protocol this request was not allowed to use."}
	errUpstreamTimeout = &HTTPError{Status: http.StatusGatewayTimeout, Code: "upstream_timeout",
		Msg: "The application did not answer in time."}
)

// Body is the JSON body of the answer: {"error":{"code","message"}} and
// the Extra fields.
func (e *HTTPError) Body() map[string]any {
	body := map[string]any{"error": map[string]string{"code": e.Code, "message": e.Msg}}
	for k, v := range e.Extra {
		body[k] = v
	}
	return body
}

// WriteError writes e in the SPEC's shape:
// {"error":{"code":"…","message":"…"}} plus e.Extra at the top level.
func WriteError(w http.ResponseWriter, e *HTTPError) {
	body := e.Body()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if e.Status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	for k, vv := range e.Header {
		h[k] = append(h[k], vv...)
	}
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(body)
}
