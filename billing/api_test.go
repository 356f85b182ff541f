package billing

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

func TestSubscriptionAnswer(t *testing.T) {
	r := newRig(t)
	r.subscribe("cus_A", "sub_A", stripe.SubscriptionStatusTrialing, "price_pro_m", "price_calls_m")
	r.double.SetActiveEntitlements("cus_A", "beta")

	a := r.call("GET", "/subscription", "u1", "cus_A", "")
	if a.status != http.StatusOK {
		t.Fatalf("subscription = %d %s", a.status, a.raw)
	}
	for k, want := range map[string]any{"customer": "cus_A", "subscription": "sub_A", "plan": "pro",
		"status": "trialing", "entitled": true, "cancel_at_period_end": false} {
		if a.body[k] != want {
			t.Errorf("%s = %v; want %v", k, a.body[k], want)
		}
	}
	if f, _ := a.body["features"].([]any); len(f) != 2 || f[0] != "beta" || f[1] != "exports" {
		t.Errorf("features = %v; want [beta exports] (Stripe entitlements ∪ plan features)", a.body["features"])
	}
	if a.str("current_period_end") == "" {
		t.Errorf("no current_period_end in %s", a.raw)
	}

	none := r.call("GET", "/subscription", "u2", "", "")
	if none.status != http.StatusOK || none.body["entitled"] != false || none.str("customer") != "" {
		t.Errorf("subscription of a user without customer = %d %s; want 200, not entitled", none.status, none.raw)
	}
}

func TestUsageAnswer(t *testing.T) {
	r := newRig(t)
	r.subscribe("cus_S", "sub_S", stripe.SubscriptionStatusActive, "price_starter_m")
	r.subscribe("cus_T", "sub_T", stripe.SubscriptionStatusActive, "price_team_m")
	r.used["cus_S/api_calls"] = 42
	r.used["cus_T/api_calls"] = 7

	a := r.call("GET", "/usage", "u1", "cus_S", "")
	m := meterOf(t, a, "api_calls")
	if a.status != http.StatusOK || m["used"] != float64(42) || m["limit"] != float64(100) || a.str("period_end") == "" {
		t.Errorf("usage of a starter customer = %d %s; want api_calls used 42 of 100 in a period", a.status, a.raw)
	}
	b := r.call("GET", "/usage", "u2", "cus_T", "")
	if m := meterOf(t, b, "api_calls"); m["used"] != float64(7) || m["limit"] != nil {
		t.Errorf("usage of a team customer = %s; want used 7, limit null (unlimited)", b.raw)
	}
}

func meterOf(t *testing.T, a answer, name string) map[string]any {
	t.Helper()
	ms, _ := a.body["meters"].([]any)
	for _, x := range ms {
		if m, _ := x.(map[string]any); m["meter"] == name {
			return m
		}
	}
	t.Fatalf("no meter %q in %s", name, a.raw)
	return nil
}

func TestInvoices(t *testing.T) {
	r := newRig(t)
	r.double.PutCustomer(&stripe.Customer{ID: "cus_A"})
	for i, id := range []string{"in_1", "in_2", "in_3"} {
		r.double.PutInvoice(&stripe.Invoice{ID: id, Customer: &stripe.Customer{ID: "cus_A"}, Status: "paid",
			Number: "N-" + id, AmountDue: 1000, AmountPaid: 1000, Total: 1000, Currency: "usd",
			Created: r.now.Unix() + int64(i), HostedInvoiceURL: "https://invoice.stripe.test/" + id,
			InvoicePDF: "https://pay.stripe.test/" + id + ".pdf"})
	}
	r.double.PutInvoice(&stripe.Invoice{ID: "in_other", Customer: &stripe.Customer{ID: "cus_B"}, Status: "paid"})

	a := r.call("GET", "/invoices?limit=2", "u1", "cus_A", "")
	data, _ := a.body["data"].([]any)
	if a.status != http.StatusOK || len(data) != 2 || a.body["has_more"] != true {
		t.Fatalf("invoices?limit=2 = %d %s; want 2 and has_more", a.status, a.raw)
	}
	first := data[0].(map[string]any)
	if first["id"] != "in_3" || first["hosted_invoice_url"] != "https://invoice.stripe.test/in_3" || first["invoice_pdf"] == "" {
		t.Errorf("first invoice = %v; want the newest (in_3) with its links", first)
	}
	b := r.call("GET", "/invoices?limit=2&starting_after=in_2", "u1", "cus_A", "")
	if data, _ := b.body["data"].([]any); len(data) != 1 || data[0].(map[string]any)["id"] != "in_1" || b.body["has_more"] != false {
		t.Errorf("second page = %s; want in_1 only", b.raw)
	}
	for _, q := range []string{"limit=0", "limit=101", "limit=x", "starting_after=cus_A", "starting_after=in_%27"} {
		if c := r.call("GET", "/invoices?"+q, "u1", "cus_A", ""); c.status != http.StatusBadRequest {
			t.Errorf("invoices?%s = %d %s; want 400", q, c.status, c.raw)
		}
	}
	if c := r.call("GET", "/invoices", "u1", "", ""); c.status != http.StatusConflict || c.code() != "no_customer" {
		t.Errorf("invoices without a customer = %d %s; want 409 no_customer", c.status, c.raw)
	}
	for _, q := range r.stripeCalls("GET", "/v1/invoices") {
		if q.Form.Get("customer") != "cus_A" {
			t.Errorf("invoices listed for customer %q; want only the caller's", q.Form.Get("customer"))
		}
	}
}

func TestProtocol(t *testing.T) {
	r := newRig(t)
	cases := []struct {
		name, method, path, body string
		header                   []string
		user                     string
		status                   int
		code                     string
	}{
		{"no identity", "GET", "/subscription", "", nil, "", 401, "unauthenticated"},
		{"unknown endpoint", "GET", "/nope", "", nil, "u1", 404, "not_found"},
		{"the prefix itself", "GET", "", "", nil, "u1", 404, "not_found"},
		{"wrong method", "GET", "/checkout", "", nil, "u1", 405, "method_not_allowed"},
		{"form body", "POST", "/checkout", "plan=pro", []string{"Content-Type", "application/x-www-form-urlencoded"}, "u1", 415, "unsupported_media_type"},
		{"huge body", "POST", "/checkout", `{"plan":"` + strings.Repeat("x", 17<<10) + `"}`, nil, "u1", 413, "body_too_large"},
		{"cross-site POST", "POST", "/subscription/cancel", "", []string{"Sec-Fetch-Site", "cross-site"}, "u1", 403, "cross_origin"},
		{"foreign Origin", "POST", "/portal", "", []string{"Origin", "https://evil.example"}, "u1", 403, "cross_origin"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := r.call(tc.method, tc.path, tc.user, "", tc.body, tc.header...)
			if a.status != tc.status || a.code() != tc.code {
				t.Errorf("%s %s = %d %s; want %d %s", tc.method, tc.path, a.status, a.raw, tc.status, tc.code)
			}
			if a.header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control = %q; want no-store", a.header.Get("Cache-Control"))
			}
		})
	}
	if a := r.call("GET", "/checkout", "u1", "", ""); a.header.Get("Allow") != "POST" {
		t.Errorf("405 Allow = %q; want POST", a.header.Get("Allow"))
	}
	// A same-origin browser request is fine.
	if a := r.call("POST", "/portal", "u1", "", "", "Sec-Fetch-Site", "same-origin"); a.code() != "no_customer" {
		t.Errorf("same-origin POST = %d %s; want it through to the endpoint (409 no_customer)", a.status, a.raw)
	}
	if len(r.double.Requests()) != 0 {
		t.Errorf("refused requests reached Stripe: %d calls", len(r.double.Requests()))
	}
}

// Stripe's failures become answers the app can act on, with Stripe's own
// words only in the log.
func TestStripeFailures(t *testing.T) {
	r := newRig(t)
	r.subscribe("cus_A", "sub_A", stripe.SubscriptionStatusActive, "price_starter_m")
	r.call("GET", "/subscription", "u1", "cus_A", "") // state and prices cached
	cases := []struct {
		name   string
		fault  testrig.Fault
		status int
		code   string
	}{
		{"outage", testrig.Fault{Status: 500, Type: "api_error", Message: "secret internal detail", ShouldRetry: "false"}, 503, "billing_unavailable"},
		{"rate limited", testrig.Fault{Status: 429, Type: "invalid_request_error", Code: "rate_limit", Message: "secret rate detail", ShouldRetry: "false"}, 503, "billing_unavailable"},
		{"refused", testrig.Fault{Status: 400, Type: "invalid_request_error", Code: "parameter_invalid", Message: "secret param detail", ShouldRetry: "false"}, 502, "billing_failed"},
		{"card declined", testrig.Fault{Status: 402, Type: "card_error", Code: "card_declined", Message: "Your card was declined.", ShouldRetry: "false"}, 402, "payment_failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r.double.FailNextWith(1, tc.fault)
			a := r.call("POST", "/portal", "u1", "cus_A", "")
			if a.status != tc.status || a.code() != tc.code {
				t.Errorf("portal with Stripe %d = %d %s; want %d %s", tc.fault.Status, a.status, a.raw, tc.status, tc.code)
			}
			if strings.Contains(a.raw, "secret") {
				t.Errorf("Stripe's message reached the client: %s", a.raw)
			}
			if tc.status == 503 && a.header.Get("Retry-After") == "" {
				t.Errorf("503 without Retry-After")
			}
		})
	}
	if !strings.Contains(r.logs.String(), "secret param detail") || !strings.Contains(r.logs.String(), `"request_id":"req-test"`) {
		t.Errorf("the log lacks Stripe's detail or the request id:\n%s", r.logs.String())
	}
}

// Exact origins in cors.allowed_origins may call the billing API from the
// browser; others stay refused.
func TestTrustedOriginsFromCORS(t *testing.T) {
	r := newRig(t)
	cfg := *r.h.cfg
	cfg.CORS.AllowedOrigins = []string{"https://app.test", "https://*.wild.test"}
	h, err := New(Options{Config: &cfg, Stripe: r.h.api, Store: r.h.store, Source: r.h.source, Gate: r.h.gate, Logger: r.log})
	if err != nil {
		t.Fatal(err)
	}
	r.h = h
	for _, c := range []struct {
		origin, code string
	}{
		{"https://app.test", "no_customer"}, // through to the endpoint
		{"https://a.wild.test", "cross_origin"},
		{"https://evil.test", "cross_origin"},
	} {
		a := r.call("POST", "/portal", "u1", "", "", "Origin", c.origin, "Sec-Fetch-Site", "cross-site")
		if a.code() != c.code {
			t.Errorf("POST from %s = %d %s; want %s", c.origin, a.status, a.raw, c.code)
		}
	}
}

// One user's burst of billing calls is cut off with 429 and Retry-After;
// other users are not affected; the allowance refills with time.
func TestPerUserRateLimit(t *testing.T) {
	r := newRig(t)
	cfg := *r.h.cfg
	cfg.Billing.RateLimit = 3
	h, err := New(Options{Config: &cfg, Stripe: r.h.api, Store: r.h.store, Source: r.h.source, Gate: r.h.gate,
		Logger: r.log, Now: func() time.Time { return r.now }})
	if err != nil {
		t.Fatal(err)
	}
	r.h = h
	for i := range 3 {
		if a := r.call("GET", "/subscription", "u1", "", ""); a.status != http.StatusOK {
			t.Fatalf("call %d = %d %s; want 200 within the limit", i+1, a.status, a.raw)
		}
	}
	a := r.call("GET", "/subscription", "u1", "", "")
	if a.status != http.StatusTooManyRequests || a.code() != "rate_limited" || a.header.Get("Retry-After") != "20" {
		t.Errorf("4th call = %d %s, Retry-After %q; want 429 rate_limited, 20 s (3 a minute)", a.status, a.raw, a.header.Get("Retry-After"))
	}
	if b := r.call("GET", "/subscription", "u2", "", ""); b.status != http.StatusOK {
		t.Errorf("another user = %d; want 200", b.status)
	}
	r.now = r.now.Add(20 * time.Second)
	if a := r.call("GET", "/subscription", "u1", "", ""); a.status != http.StatusOK {
		t.Errorf("after 20 s = %d %s; want 200", a.status, a.raw)
	}
}
