package sidecar

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// Link squatting through a Payment Link: the attacker pays once with the
// victim's user id as client_reference_id (Payment Links and pricing
// tables let the payer set it). Before, the first link won: the victim's
// requests ran on the attacker's customer and the victim could never
// subscribe. Now the payment links nobody, and the victim's own checkout
// through the billing API links the victim.
func TestPaymentLinkCannotSquatAUser(t *testing.T) {
	rd := testrig.StartRedis(t)
	d := testrig.NewStripeDouble(t)
	now := time.Now()
	d.PutPrice(&stripe.Price{ID: "price_pro", Active: true, Type: stripe.PriceTypeRecurring, UnitAmount: 2000,
		Currency: "usd", Recurring: &stripe.PriceRecurring{Interval: "month", IntervalCount: 1, UsageType: "licensed"}})
	subscribe := func(customer, sub string) {
		d.PutCustomer(&stripe.Customer{ID: customer})
		d.PutSubscription(&stripe.Subscription{ID: sub, Customer: &stripe.Customer{ID: customer}, Status: "active",
			CurrentPeriodStart: now.Add(-time.Hour).Unix(), CurrentPeriodEnd: now.Add(30 * 24 * time.Hour).Unix(),
			Items: &stripe.SubscriptionItemList{Data: []*stripe.SubscriptionItem{{ID: "si_" + sub, Quantity: 1,
				Price: &stripe.Price{ID: "price_pro", Active: true, Type: stripe.PriceTypeRecurring,
					Recurring: &stripe.PriceRecurring{Interval: "month", IntervalCount: 1, UsageType: "licensed"}}}}}})
	}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("X-Tollgate-Customer"))
	}))
	defer app.Close()
	a := start(t, webhookConfig(t, app.URL, rd.URL(), d.URL()))
	victim, err := auth.SignHS256([]byte(strings.Repeat("k", 32)), jwt.MapClaims{
		"sub": "user_victim", "aud": "api", "exp": now.Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}

	// 1. The attacker's Payment Link payment names the victim.
	subscribe("cus_attacker", "sub_attacker")
	d.PutCheckoutSession(&stripe.CheckoutSession{ID: "cs_test_plink", Customer: &stripe.Customer{ID: "cus_attacker"},
		ClientReferenceID: "user_victim", Mode: "subscription", Status: "complete",
		PaymentLink: &stripe.PaymentLink{ID: "plink_1"}, Subscription: &stripe.Subscription{ID: "sub_attacker"}})
	if code, resp := postEvent(t, a, newEvent(t, "evt_plink", "checkout.session.completed",
		map[string]any{"id": "cs_test_plink", "object": "checkout.session"})); code != 200 {
		t.Fatalf("payment link checkout event = %d %s", code, resp)
	}
	if got := testutil.ToFloat64(a.sc.Metrics.UserLinks.WithLabelValues("unverified")); got != 1 {
		t.Errorf("user_links_total{unverified} = %v; want 1", got)
	}
	if code, body := getAs(t, a, "/api/x", victim); code != http.StatusPaymentRequired || body == "cus_attacker" {
		t.Fatalf("victim after the attacker's payment = %d %q; want 402 (not linked to cus_attacker)", code, body)
	}

	// 2. The victim subscribes through tollgate; Stripe completes the
	// session tollgate created.
	code, m := billingCall(t, a, "POST", "/checkout", victim, `{"plan":"pro"}`)
	if code != http.StatusOK {
		t.Fatalf("victim's checkout = %d %v", code, m)
	}
	subscribe("cus_victim", "sub_victim")
	d.CompleteCheckoutSession(m["id"].(string), "cus_victim", "sub_victim")
	if code, resp := postEvent(t, a, newEvent(t, "evt_victim", "checkout.session.completed",
		map[string]any{"id": m["id"], "object": "checkout.session"})); code != 200 {
		t.Fatalf("victim's checkout event = %d %s", code, resp)
	}
	testrig.Eventually(t, "the victim to be served as their own customer", func() bool {
		code, body := getAs(t, a, "/api/x", victim)
		return code == http.StatusOK && body == "cus_victim"
	})
	if got := testutil.ToFloat64(a.sc.Metrics.UserLinks.WithLabelValues("linked")); got != 1 {
		t.Errorf("user_links_total{linked} = %v; want 1", got)
	}
}
