package sidecar

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/logging"
	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// Customer PII that Stripe's objects carry; none of it may appear in any
// log line, at any level.
var pii = []string{
	"jane.doe.pii@example.com", "Jane Piiperson", "+1 555 0100 4242", "42 Secret Lane", "Privacyville",
	"PII 9Z9", "Shippy McShipface", "card.holder.pii@example.com", "Holder Piiname", "7 Hidden Road",
}

func address() *stripe.Address {
	return &stripe.Address{Line1: "42 Secret Lane", City: "Privacyville", PostalCode: "PII 9Z9", Country: "US"}
}

// putPIICustomer fills the double with a customer whose objects are full
// of PII: the customer, its subscription, an open invoice, a completed
// checkout session with customer_details.
func putPIICustomer(d *testrig.StripeDouble, now time.Time) {
	d.PutPrice(&stripe.Price{ID: "price_pro", Active: true, Type: stripe.PriceTypeRecurring, UnitAmount: 2000,
		Currency: "usd", Recurring: &stripe.PriceRecurring{Interval: "month", IntervalCount: 1, UsageType: "licensed"}})
	d.PutCustomer(&stripe.Customer{ID: "cus_pii", Email: "jane.doe.pii@example.com", Name: "Jane Piiperson",
		Phone: "+1 555 0100 4242", Address: address(), Description: "Jane Piiperson",
		Shipping: &stripe.ShippingDetails{Name: "Shippy McShipface", Address: address(), Phone: "+1 555 0100 4242"},
		Metadata: map[string]string{"contact": "jane.doe.pii@example.com"}})
	d.PutSubscription(&stripe.Subscription{ID: "sub_pii", Customer: &stripe.Customer{ID: "cus_pii"}, Status: "past_due",
		CurrentPeriodStart: now.Add(-time.Hour).Unix(), CurrentPeriodEnd: now.Add(30 * 24 * time.Hour).Unix(),
		Items: &stripe.SubscriptionItemList{Data: []*stripe.SubscriptionItem{{ID: "si_pii", Quantity: 1,
			Price: &stripe.Price{ID: "price_pro", Active: true, Type: stripe.PriceTypeRecurring, UnitAmount: 2000, Currency: "usd",
				Recurring: &stripe.PriceRecurring{Interval: "month", IntervalCount: 1, UsageType: "licensed"}}}}}})
	d.PutInvoice(&stripe.Invoice{ID: "in_pii", Customer: &stripe.Customer{ID: "cus_pii"}, Status: "open", AttemptCount: 2,
		CustomerEmail: "jane.doe.pii@example.com", CustomerName: "Jane Piiperson", CustomerPhone: "+1 555 0100 4242",
		CustomerAddress: address(), CustomerShipping: &stripe.ShippingDetails{Name: "Shippy McShipface", Address: address()},
		HostedInvoiceURL: "https://invoice.stripe.test/i/in_pii"})
	d.PutCheckoutSession(&stripe.CheckoutSession{ID: "cs_test_pii", Customer: &stripe.Customer{ID: "cus_pii"},
		Status: "complete", Mode: "subscription", Subscription: &stripe.Subscription{ID: "sub_pii"},
		ClientReferenceID: "user_pii", Metadata: map[string]string{"user_id": "user_pii"},
		CustomerEmail: "jane.doe.pii@example.com", CustomerDetails: &stripe.CheckoutSessionCustomerDetails{
			Email: "jane.doe.pii@example.com", Name: "Jane Piiperson", Phone: "+1 555 0100 4242", Address: address()}})
}

// A Stripe error that embeds PII, as Stripe's card errors do: the
// message echoes input and the payment_method carries billing_details.
func piiError(*testrig.Call) *testrig.Response {
	body, _ := json.Marshal(map[string]any{"error": map[string]any{
		"type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
		"message": "Your card was declined for card.holder.pii@example.com.", "request_log_url": "https://dashboard.stripe.test/logs/req_pii",
		"payment_method": map[string]any{"id": "pm_pii", "object": "payment_method", "type": "card",
			"billing_details": map[string]any{"email": "card.holder.pii@example.com", "name": "Holder Piiname", "phone": "+1 555 0100 4242",
				"address": map[string]any{"line1": "7 Hidden Road", "city": "Privacyville"}}},
	}})
	return &testrig.Response{Status: http.StatusPaymentRequired, Header: http.Header{"Request-Id": {"req_pii"}}, Body: body}
}

// A 200 whose JSON is cut off: stripe-go's "Couldn't deserialize JSON"
// error quotes 500 bytes of it.
func brokenInvoiceList(*testrig.Call) *testrig.Response {
	return &testrig.Response{Status: http.StatusOK, Header: http.Header{},
		Body: []byte(`{"object":"list","data":[{"id":"in_pii","customer_email":"jane.doe.pii@example.com","customer_name":"Jane Piiperson",`)}
}

// Customer PII in logs (GDPR art. 5/32, PCI DSS 3.4-style log hygiene):
// Stripe's bodies hold emails, names, addresses and phone numbers, and
// stripe-go logs whole response bodies at debug and errors as JSON with
// the objects they embed. Run Stripe traffic of every kind, with
// PII-laden objects, at debug level, and find none of it in any line.
func TestNoStripePIIInLogsAtDebug(t *testing.T) {
	rd := testrig.StartRedis(t)
	d := testrig.NewStripeDouble(t)
	now := time.Now()
	putPIICustomer(d, now)
	app := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer app.Close()
	logs := &testrig.LogBuffer{}
	cfg := webhookConfig(t, app.URL, rd.URL(), d.URL())
	cfg.Log = config.Log{Level: "debug", Format: "json"}
	cfg.Gating.GracePeriod = 24 * time.Hour
	cfg.Routes = []*config.Route{{Path: "/api/**", Require: config.Require{Subscription: true}, Meter: "calls"}}
	cfg.Metering.FlushInterval, cfg.Metering.Window, cfg.Metering.LeaseTTL = 50*time.Millisecond, time.Second, time.Second
	cfg.Metering.Meters = map[string]*config.Meter{"calls": {EventName: "api_calls"}}
	cfg.Stripe.MaxNetworkRetries = 0
	a := startLogged(t, cfg, logging.New(cfg.Log, logs))
	token := customerToken(t, strings.Repeat("k", 32), "cus_pii")
	linked, err := signUser("user_pii")
	if err != nil {
		t.Fatal(err)
	}

	// Webhooks: the payloads carry PII too; the refetches read it from Stripe.
	for _, e := range []struct {
		id, typ string
		obj     map[string]any
	}{
		{"evt_pii_co", "checkout.session.completed", map[string]any{"id": "cs_test_pii", "object": "checkout.session",
			"customer_details": map[string]any{"email": "jane.doe.pii@example.com", "name": "Jane Piiperson"}}},
		{"evt_pii_sub", "customer.subscription.updated", map[string]any{"id": "sub_pii", "object": "subscription", "customer": "cus_pii"}},
		{"evt_pii_inv", "invoice.payment_failed", map[string]any{"id": "in_pii", "object": "invoice", "customer": "cus_pii",
			"customer_email": "jane.doe.pii@example.com", "customer_address": map[string]any{"line1": "42 Secret Lane"}}},
	} {
		if code, resp := postEvent(t, a, newEvent(t, e.id, e.typ, e.obj)); code != 200 {
			t.Fatalf("%s = %d %s", e.typ, code, resp)
		}
	}
	// The gate, metering and its report to Stripe.
	if code := callAPI(t, a, token); code != 200 {
		t.Fatalf("metered call = %d; want 200 (past_due within grace)", code)
	}
	testrig.Eventually(t, "the usage report to reach Stripe", func() bool { return len(d.MeterEvents()) > 0 })
	// The billing API, answered normally, then with Stripe errors.
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/subscription", ""}, {"GET", "/invoices", ""}, {"POST", "/portal", ""},
	} {
		if code, m := billingCall(t, a, c.method, c.path, linked, c.body); code != 200 {
			t.Fatalf("%s %s = %d %v", c.method, c.path, code, m)
		}
	}
	d.Handle("POST /v1/billing_portal/sessions", piiError)
	d.Handle("GET /v1/invoices", brokenInvoiceList)
	if code, _ := billingCall(t, a, "POST", "/portal", linked, ""); code < 400 {
		t.Errorf("portal with a card error = %d; want an error", code)
	}
	if code, _ := billingCall(t, a, "GET", "/invoices", linked, ""); code < 400 {
		t.Errorf("invoices with a broken answer = %d; want an error", code)
	}

	out := logs.String()
	for _, must := range []string{`"stripe-go: response"`, `"object":"customer"`, `"id":"cus_pii"`, "card_declined", "req_pii", "body sample withheld"} {
		if !strings.Contains(out, must) {
			t.Errorf("logs lack %s: the test did not see the traffic it checks", must)
		}
	}
	lower := strings.ToLower(out)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		for _, p := range pii {
			if strings.Contains(strings.ToLower(line), strings.ToLower(p)) {
				t.Errorf("log line holds customer PII %q:\n%s", p, line)
			}
		}
	}
	if !strings.Contains(lower, `"level":"debug"`) {
		t.Errorf("no debug lines: the test must run at debug level")
	}
}

func signUser(user string) (string, error) {
	return auth.SignHS256([]byte(strings.Repeat("k", 32)), jwt.MapClaims{
		"sub": user, "aud": "api", "exp": time.Now().Add(time.Hour).Unix()})
}
