package meter

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

func TestClassify(t *testing.T) {
	stripeErr := func(status int, msg, param string) error {
		return &stripe.Error{HTTPStatusCode: status, Msg: msg, Param: param}
	}
	timeout := &url.Error{Op: "Post", URL: "https://api.stripe.com", Err: context.DeadlineExceeded}
	for _, c := range []struct {
		name          string
		err           error
		wantReason    string // "" = delivered
		wantPermanent bool
	}{
		{"accepted", nil, "", false},
		{"already exists", stripeErr(400, "An event already exists with identifier tg-x.", "identifier"), "", false},
		{"rate limited", stripeErr(429, "Request rate limit exceeded.", ""), "rate_limited", false},
		{"server error", stripeErr(500, "An unknown error occurred", ""), "server_error", false},
		{"lock timeout", stripeErr(409, "This object cannot be accessed right now", ""), "conflict", false},
		{"bad key is not parked", stripeErr(401, "Invalid API Key provided", ""), "auth", false},
		{"unknown customer", stripeErr(400, "No such customer: 'cus_x'", ""), "unknown_customer", true},
		{"unknown meter", stripeErr(400, "No active meter was found matching event_name api_calls.", "event_name"), "unknown_meter", true},
		{"bad timestamp", stripeErr(400, "The timestamp must be within the past 35 calendar days.", "timestamp"), "invalid_request", true},
		{"missing item", stripeErr(404, "No such subscription item: 'si_x'", "subscription_item"), "not_found", true},
		// "parameters" holds the letters of "meter": not an unknown meter.
		{"idempotency key reused on another item", &stripe.Error{HTTPStatusCode: 400, Type: stripe.ErrorTypeIdempotency,
			Msg: "Keys for idempotent requests can only be used with the same parameters they were first used with."}, "idempotency_conflict", true},
		{"another parameter problem", stripeErr(400, "Invalid parameters: quantity must be positive.", "quantity"), "invalid_request", true},
		{"timeout", timeout, "timeout", false},
		{"cancelled", context.Canceled, "canceled", false},
		{"connection refused", errors.New("dial tcp: connection refused"), "network", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := classify(c.err)
			if c.wantReason == "" {
				if got != nil && !errors.Is(got, ErrAlreadyReported) {
					t.Errorf("classify(%v) = %v; want delivered", c.err, got)
				}
				return
			}
			var se *SendError
			if !errors.As(got, &se) || se.Reason != c.wantReason || se.Permanent != c.wantPermanent {
				t.Errorf("classify(%v) = %v; want reason %s, permanent %v", c.err, got, c.wantReason, c.wantPermanent)
			}
		})
	}
}

// The meter event request as stripe-go sends it, checked by the recording
// double (fields) and by stripe-mock (Stripe's OpenAPI spec).
func TestMeterEventRequestShape(t *testing.T) {
	ws := time.Now().Add(-time.Minute).Truncate(time.Minute).UnixMilli()
	rep := Report{Customer: "cus_Shape1", Meter: "calls", Config: config.Meter{EventName: "api_calls"}, Units: 12,
		Timestamp: eventTimestamp(ws), Identifier: Identifier("cus_Shape1", "calls", ws, "g1", 1)}

	d := testrig.NewStripeDouble(t)
	if err := NewStripeSender(testrig.StripeClient(t, d.URL()), 5*time.Second).Send(context.Background(), rep); err != nil {
		t.Fatalf("Send to the double: %v", err)
	}
	reqs := d.Requests()
	if len(reqs) != 1 {
		t.Fatalf("double saw %d requests; want 1", len(reqs))
	}
	req := reqs[0]
	for field, want := range map[string]string{
		"event_name":                  "api_calls",
		"identifier":                  rep.Identifier,
		"payload[stripe_customer_id]": "cus_Shape1",
		"payload[value]":              "12",
		"timestamp":                   strconv.FormatInt(rep.Timestamp, 10),
	} {
		if got := req.Form.Get(field); got != want {
			t.Errorf("%s = %q; want %q", field, got, want)
		}
	}
	if req.Method != "POST" || req.Path != "/v1/billing/meter_events" || req.IdempotencyKey == "" {
		t.Errorf("request %s %s idempotency key %q; want POST /v1/billing/meter_events with a key", req.Method, req.Path, req.IdempotencyKey)
	}

	mock := testrig.StartStripeMock(t)
	if err := NewStripeSender(testrig.StripeClient(t, mock.URL()), 10*time.Second).Send(context.Background(), rep); err != nil {
		t.Errorf("stripe-mock refused the meter event: %v", err)
	}
}
