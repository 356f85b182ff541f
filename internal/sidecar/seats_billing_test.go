package sidecar

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// seatPair is two replicas on one Redis and one Stripe double, whose plan
// pro limits seats, and a subscription cus_st holds with quantity 1.
type seatPair struct {
	a, b *running
	d    *testrig.StripeDouble
}

func newSeatPair(t *testing.T, seats config.Seats, sync bool) *seatPair {
	t.Helper()
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	d := testrig.NewStripeDouble(t)
	price := &stripe.Price{ID: "price_pro", Active: true, Type: stripe.PriceTypeRecurring, UnitAmount: 2000,
		Currency: "usd", Recurring: &stripe.PriceRecurring{Interval: "month", IntervalCount: 1, UsageType: "licensed"}}
	d.PutPrice(price)
	d.PutCustomer(&stripe.Customer{ID: "cus_st"})
	now := time.Now()
	d.PutSubscription(&stripe.Subscription{ID: "sub_st", Customer: &stripe.Customer{ID: "cus_st"}, Status: "active",
		CurrentPeriodStart: now.Add(-24 * time.Hour).Unix(), CurrentPeriodEnd: now.Add(29 * 24 * time.Hour).Unix(),
		Items: &stripe.SubscriptionItemList{Data: []*stripe.SubscriptionItem{{ID: "si_st", Quantity: 1, Price: price}}}})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(app.Close)
	newCfg := func() *config.Config {
		cfg := webhookConfig(t, app.URL, rd.URL(), d.URL())
		cfg.Plans["pro"].Seats = seats
		cfg.Billing.AdminClaim = "billing_admin"
		cfg.Billing.SeatsSync, cfg.Billing.SeatsSyncDelay = sync, 100*time.Millisecond
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	p := &seatPair{a: start(t, newCfg()), b: start(t, newCfg()), d: d}
	evt := newEvent(t, "evt_seat_sub", "customer.subscription.created", map[string]any{"id": "sub_st", "object": "subscription", "customer": "cus_st"})
	if code, resp := postEvent(t, p.a, evt); code != http.StatusOK {
		t.Fatalf("webhook = %d %s", code, resp)
	}
	return p
}

// token is a user of cus_st; admin is the value of the admin claim (nil:
// none).
func seatToken(t *testing.T, user string, admin any) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": user, "stripe_customer_id": "cus_st", "aud": "api", "exp": time.Now().Add(time.Hour).Unix()}
	if admin != nil {
		claims["billing_admin"] = admin
	}
	tok, err := auth.SignHS256([]byte(strings.Repeat("k", 32)), claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// With billing.seats_sync the seat item's quantity follows the seats in
// use on two replicas; GET seats lists the holders; only an admin (the
// claim's value true) releases a seat, and the quantity follows that too.
func TestSeatsBillingAPIAndQuantity(t *testing.T) {
	p := newSeatPair(t, config.SeatsQuantity, true)
	ann, bob, cy := seatToken(t, "ann", true), seatToken(t, "bob", nil), seatToken(t, "cy", "true")
	for i, tok := range []string{ann, bob, cy} {
		r := []*running{p.a, p.b}[i%2]
		testrig.Eventually(t, "the subscriber to be served", func() bool { return callAPI(t, r, tok) == http.StatusOK })
	}
	quantity := func() int64 { q, _ := p.d.ItemQuantity("si_st"); return q }
	testrig.Eventually(t, "the quantity to follow the three seats", func() bool { return quantity() == 3 })

	code, m := billingCall(t, p.b, "GET", "/seats", bob, "")
	holders, _ := m["holders"].([]any)
	if code != http.StatusOK || m["used"] != 3.0 || len(holders) != 3 || m["limit"] != nil || m["admin"] != false || m["plan"] != "pro" {
		t.Fatalf("GET seats = %d %v; want 3 holders, used 3, no limit (billed per seat), not admin", code, m)
	}
	first, _ := holders[0].(map[string]any)
	if first["user"] != "ann" || first["since"] == nil || first["last_seen"] == nil {
		t.Errorf("first holder = %v; want ann with since and last_seen", first)
	}
	for name, tok := range map[string]string{"no admin claim": bob, `the claim as a string "true"`: cy} {
		if code, m := billingCall(t, p.a, "DELETE", "/seats/ann", tok, ""); code != http.StatusForbidden || errCode(m) != "admin_required" {
			t.Errorf("DELETE seats/ann with %s = %d %v; want 403 admin_required", name, code, m)
		}
	}
	code, m = billingCall(t, p.a, "DELETE", "/seats/cy", ann, "")
	if code != http.StatusOK || m["released"] != true || m["used"] != 2.0 || m["user"] != "cy" {
		t.Fatalf("DELETE seats/cy by an admin = %d %v; want released, 2 used", code, m)
	}
	if code, m := billingCall(t, p.a, "DELETE", "/seats/cy", ann, ""); code != http.StatusOK || m["released"] != false {
		t.Errorf("DELETE seats/cy again = %d %v; want 200, released false", code, m)
	}
	testrig.Eventually(t, "the quantity to follow the release", func() bool { return quantity() == 2 })
	for _, q := range p.d.Requests() {
		if q.Method == "POST" && strings.HasPrefix(q.Path, "/v1/subscription_items/") && q.Form.Get("proration_behavior") != "create_prorations" {
			t.Errorf("quantity update with proration_behavior %q; want create_prorations", q.Form.Get("proration_behavior"))
		}
	}
}

func errCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

// An admin's release frees the seat on every replica at once: the released
// holder, known to the other replica, is refused there as soon as a
// newcomer took the seat (SPEC: within 1 s).
func TestSeatReleaseOnEveryReplica(t *testing.T) {
	p := newSeatPair(t, "1", false)
	ann, bob := seatToken(t, "ann", true), seatToken(t, "bob", nil)
	for _, r := range []*running{p.a, p.b} {
		testrig.Eventually(t, "ann to be served", func() bool { return callAPI(t, r, ann) == http.StatusOK })
	}
	if code := callAPI(t, p.b, bob); code != http.StatusForbidden {
		t.Fatalf("bob with the one seat taken = %d; want 403", code)
	}
	code, m := billingCall(t, p.a, "GET", "/seats", ann, "")
	if code != http.StatusOK || m["limit"] != 1.0 || m["used"] != 1.0 || m["admin"] != true {
		t.Errorf("GET seats = %d %v; want limit 1, used 1, admin", code, m)
	}
	if code, m := billingCall(t, p.a, "DELETE", "/seats/ann", ann, ""); code != http.StatusOK || m["released"] != true {
		t.Fatalf("DELETE seats/ann = %d %v", code, m)
	}
	if code := callAPI(t, p.a, bob); code != http.StatusOK {
		t.Fatalf("bob after the release = %d; want 200", code)
	}
	// Eventually gives up after 20 s, before replica b would ask Redis
	// about ann again by itself (30 s): only the announcement can do it.
	start := time.Now()
	testrig.Eventually(t, "replica b to refuse ann", func() bool { return callAPI(t, p.b, ann) == http.StatusForbidden })
	t.Logf("replica b refused the released holder after %v", time.Since(start))
}
