package billing

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stripe/stripe-go/v76"
)

func TestCheckout(t *testing.T) {
	r := newRig(t)
	r.double.PutCustomer(&stripe.Customer{ID: "cus_Trialled"})
	r.double.PutSubscription(&stripe.Subscription{ID: "sub_Old", Customer: &stripe.Customer{ID: "cus_Trialled"},
		Status: stripe.SubscriptionStatusCanceled, TrialStart: 1, TrialEnd: 2, Items: &stripe.SubscriptionItemList{}})
	r.subscribe("cus_Paying", "sub_Paying", stripe.SubscriptionStatusActive, "price_pro_m")

	cases := []struct {
		name, user, customer, body string
		// the Stripe form the session must be created with ("" = absent)
		want map[string]string
	}{
		{"new user, monthly, trial", "u_new", "", `{"plan":"starter","interval":"month"}`, map[string]string{
			"mode": "subscription", "line_items[0][price]": "price_starter_m", "line_items[0][quantity]": "1",
			"line_items[1][price]": "", "client_reference_id": "u_new", "metadata[user_id]": "u_new",
			"subscription_data[metadata][user_id]": "u_new", "subscription_data[trial_period_days]": "14",
			"customer": "", "success_url": "https://app.test/billing?s={CHECKOUT_SESSION_ID}",
			"cancel_url": "https://app.test/billing?cancelled", "customer_creation": ""}},
		{"yearly", "u_new", "", `{"plan":"starter","interval":"year"}`, map[string]string{
			"line_items[0][price]": "price_starter_y"}},
		{"licensed and metered prices of one plan", "u_new", "", `{"plan":"pro"}`, map[string]string{
			"line_items[0][price]": "price_pro_m", "line_items[0][quantity]": "1",
			"line_items[1][price]": "price_calls_m", "line_items[1][quantity]": ""}},
		{"a customer who had a trial gets none", "u_t", "cus_Trialled", `{"plan":"pro"}`, map[string]string{
			"customer": "cus_Trialled", "subscription_data[trial_period_days]": ""}},
		{"one-time plan: payment mode, customer created", "u_new", "", `{"plan":"lifetime"}`, map[string]string{
			"mode": "payment", "line_items[0][price]": "price_life", "customer_creation": "always",
			"subscription_data[metadata][user_id]": ""}},
		{"one-time plan for a subscriber", "u_p", "cus_Paying", `{"plan":"lifetime"}`, map[string]string{
			"mode": "payment", "customer": "cus_Paying", "customer_creation": ""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(r.stripeCalls("POST", "/v1/checkout/sessions"))
			a := r.call("POST", "/checkout", tc.user, tc.customer, tc.body)
			if a.status != http.StatusOK || !strings.HasPrefix(a.str("id"), "cs_") || a.str("url") == "" {
				t.Fatalf("checkout = %d %s; want 200 with a session id and url", a.status, a.raw)
			}
			calls := r.stripeCalls("POST", "/v1/checkout/sessions")
			if len(calls) != before+1 {
				t.Fatalf("%d checkout sessions created; want 1", len(calls)-before)
			}
			got := calls[len(calls)-1]
			for k, want := range tc.want {
				if v := got.Form.Get(k); v != want {
					t.Errorf("session %s = %q; want %q", k, v, want)
				}
			}
			if !strings.HasPrefix(got.IdempotencyKey, "tg-checkout-") {
				t.Errorf("Idempotency-Key = %q; want tg-checkout-…", got.IdempotencyKey)
			}
			// The webhook links the session's user from this record, never
			// from client_reference_id (link squatting).
			owner, ok, err := r.h.checkouts.(*RedisCheckouts).SessionOwner(context.Background(), a.str("id"))
			if err != nil || !ok || owner != tc.user {
				t.Errorf("recorded owner of %s = %q, %v, %v; want %s", a.str("id"), owner, ok, err, tc.user)
			}
		})
	}
}

func TestCheckoutRefusals(t *testing.T) {
	r := newRig(t)
	r.subscribe("cus_Paying", "sub_Paying", stripe.SubscriptionStatusActive, "price_pro_m")
	r.double.PutCustomer(&stripe.Customer{ID: "cus_Gone", Deleted: true})
	cases := []struct {
		name, customer, body string
		status               int
		code, inMessage      string
	}{
		{"unknown plan lists the plans", "", `{"plan":"gold"}`, 400, "invalid_request", "lifetime, pro, retired, starter, team"},
		{"no plan", "", `{}`, 400, "invalid_request", `Unknown plan ""`},
		{"interval needed", "", `{"plan":"starter"}`, 400, "interval_required", "month or year"},
		{"interval not sold", "", `{"plan":"pro","interval":"year"}`, 400, "invalid_request", `not sold per "year"`},
		{"interval on a one-time plan", "", `{"plan":"lifetime","interval":"month"}`, 400, "invalid_request", "one-time"},
		{"archived prices only", "", `{"plan":"retired"}`, 409, "plan_unavailable", "no active price"},
		{"already subscribed", "cus_Paying", `{"plan":"team"}`, 409, "already_subscribed", "subscription/change"},
		{"customer deleted in Stripe", "cus_Gone", `{"plan":"team"}`, 409, "customer_deleted", "contact support"},
		{"unknown field", "", `{"plan":"pro","price":"price_x"}`, 400, "invalid_request", `unknown field "price"`},
		{"wrong type", "", `{"plan":7}`, 400, "invalid_request", `field "plan" must be a string`},
		{"two JSON values", "", `{"plan":"pro"}{}`, 400, "invalid_request", "more than one JSON value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := r.call("POST", "/checkout", "u1", tc.customer, tc.body)
			msg := ""
			if e, ok := a.body["error"].(map[string]any); ok {
				msg, _ = e["message"].(string)
			}
			if a.status != tc.status || a.code() != tc.code || !strings.Contains(msg, tc.inMessage) {
				t.Errorf("checkout %s = %d %s; want %d %s mentioning %q", tc.body, a.status, a.raw, tc.status, tc.code, tc.inMessage)
			}
		})
	}
	if n := len(r.stripeCalls("POST", "/v1/checkout/sessions")); n != 0 {
		t.Errorf("%d checkout sessions created by refused requests; want 0", n)
	}
}

// A double click (the same Idempotency-Key twice) creates one session and
// answers both with it; another key creates another.
func TestCheckoutIdempotencyKey(t *testing.T) {
	r := newRig(t)
	r.h.checkouts = nil // Stripe's idempotency alone; TestOneCheckoutPerUser has both
	first := r.call("POST", "/checkout", "u1", "", `{"plan":"team"}`, "Idempotency-Key", "click-1")
	again := r.call("POST", "/checkout", "u1", "", `{"plan":"team"}`, "Idempotency-Key", "click-1")
	other := r.call("POST", "/checkout", "u1", "", `{"plan":"team"}`, "Idempotency-Key", "click-2")
	otherUser := r.call("POST", "/checkout", "u2", "", `{"plan":"team"}`, "Idempotency-Key", "click-1")
	if first.str("id") == "" || again.str("id") != first.str("id") {
		t.Errorf("same key: sessions %q and %q; want one session", first.str("id"), again.str("id"))
	}
	if other.str("id") == first.str("id") || otherUser.str("id") == first.str("id") {
		t.Errorf("another key or user got the first session %q", first.str("id"))
	}
	keys := map[string]bool{}
	for _, c := range r.stripeCalls("POST", "/v1/checkout/sessions") {
		keys[c.IdempotencyKey] = true
	}
	if len(keys) != 3 {
		t.Errorf("%d distinct Stripe idempotency keys; want 3 (one per client key and user)", len(keys))
	}
	reused := r.call("POST", "/checkout", "u1", "", `{"plan":"starter","interval":"year"}`, "Idempotency-Key", "click-1")
	if reused.status != http.StatusConflict || reused.code() != "idempotency_conflict" {
		t.Errorf("key reused for another plan = %d %s; want 409 idempotency_conflict", reused.status, reused.raw)
	}
}

func TestPortal(t *testing.T) {
	r := newRig(t)
	r.double.PutCustomer(&stripe.Customer{ID: "cus_A"})
	if a := r.call("POST", "/portal", "u1", "", ""); a.status != http.StatusConflict || a.code() != "no_customer" {
		t.Errorf("portal without a customer = %d %s; want 409 no_customer", a.status, a.raw)
	}
	a := r.call("POST", "/portal", "u1", "cus_A", "")
	if a.status != http.StatusOK || a.str("url") == "" {
		t.Fatalf("portal = %d %s; want 200 with a url", a.status, a.raw)
	}
	calls := r.stripeCalls("POST", "/v1/billing_portal/sessions")
	if len(calls) != 1 || calls[0].Form.Get("customer") != "cus_A" || calls[0].Form.Get("return_url") != "https://app.test/billing" {
		t.Errorf("portal sessions = %+v; want one for cus_A returning to billing.return_url", calls)
	}
}

// A user has one payable checkout at a time: another tab gets the same
// session, another plan expires the earlier one, a completed one (its
// webhook not yet applied) refuses a second purchase until its
// subscription ends, and concurrent clicks leave one open session.
func TestOneCheckoutPerUser(t *testing.T) {
	r := newRig(t)
	a := r.call("POST", "/checkout", "u1", "", `{"plan":"team"}`)
	b := r.call("POST", "/checkout", "u1", "", `{"plan":"team"}`)
	if a.str("id") == "" || b.str("id") != a.str("id") {
		t.Fatalf("second tab got %q; want the first session %q", b.str("id"), a.str("id"))
	}
	if n := len(r.stripeCalls("POST", "/v1/checkout/sessions")); n != 1 {
		t.Errorf("%d sessions created; want 1", n)
	}
	c := r.call("POST", "/checkout", "u1", "", `{"plan":"starter","interval":"year"}`)
	if c.status != http.StatusOK || c.str("id") == a.str("id") {
		t.Fatalf("another plan = %d %s; want a new session", c.status, c.raw)
	}
	if s, _ := r.double.CheckoutSession(a.str("id")); s.Status != stripe.CheckoutSessionStatusExpired {
		t.Errorf("the first session is %q; want expired, so only the newest can be paid", s.Status)
	}

	// The customer pays; the webhook has not arrived yet.
	r.double.PutCustomer(&stripe.Customer{ID: "cus_new"})
	r.double.PutSubscription(&stripe.Subscription{ID: "sub_new", Customer: &stripe.Customer{ID: "cus_new"},
		Status: stripe.SubscriptionStatusActive, Items: &stripe.SubscriptionItemList{}})
	r.double.CompleteCheckoutSession(c.str("id"), "cus_new", "sub_new")
	if d := r.call("POST", "/checkout", "u1", "", `{"plan":"team"}`); d.status != http.StatusConflict || d.code() != "checkout_completed" {
		t.Errorf("checkout right after paying = %d %s; want 409 checkout_completed", d.status, d.raw)
	}
	if d := r.call("POST", "/checkout", "u1", "", `{"plan":"lifetime"}`); d.status != http.StatusOK {
		t.Errorf("a one-time purchase after subscribing = %d %s; want 200", d.status, d.raw)
	}
	r.double.PutSubscription(&stripe.Subscription{ID: "sub_new", Customer: &stripe.Customer{ID: "cus_new"},
		Status: stripe.SubscriptionStatusCanceled, Items: &stripe.SubscriptionItemList{}})
	if d := r.call("POST", "/checkout", "u9", "", `{"plan":"team"}`); d.status != http.StatusOK {
		t.Errorf("another user = %d %s; want 200", d.status, d.raw)
	}

	// Concurrent clicks for two plans: one payable session is left.
	expiries := func() int {
		n := 0
		for _, q := range r.double.Requests() {
			if q.Method == "POST" && strings.HasSuffix(q.Path, "/expire") && q.Status == http.StatusOK {
				n++
			}
		}
		return n
	}
	before, expiredBefore := len(r.stripeCalls("POST", "/v1/checkout/sessions")), expiries()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := []string{`{"plan":"team"}`, `{"plan":"pro"}`}[i%2]
			a := r.call("POST", "/checkout", "u3", "", body)
			if a.status != http.StatusOK && a.code() != "checkout_in_progress" {
				t.Errorf("concurrent checkout = %d %s; want 200 or 409 checkout_in_progress", a.status, a.raw)
			}
		}()
	}
	wg.Wait()
	created, expired := len(r.stripeCalls("POST", "/v1/checkout/sessions"))-before, expiries()-expiredBefore
	open := created - expired
	if open != 1 {
		t.Errorf("u3: %d sessions created, %d expired; want exactly one left open", created, expired)
	}
}
