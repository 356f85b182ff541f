package sidecar

import (
	"encoding/json"
	"io"
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

// billingCall sends one billing API request to a replica's proxy listener.
func billingCall(t *testing.T, r *running, method, path, token, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+r.sc.ProxyAddr()+"/_tollgate/billing"+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("X-Tollgate-Customer", "cus_spoofed")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: %d, not JSON: %s", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode, m
}

// The billing loop a new user goes through, across two replicas: checkout
// on one, Stripe completes it (webhook), the other shows the plan; an
// upgrade on one is enforced by the other.
func TestBillingAcrossReplicas(t *testing.T) {
	rd := testrig.StartRedis(t)
	d := testrig.NewStripeDouble(t)
	now := time.Now()
	for _, p := range []struct {
		id     string
		amount int64
	}{{"price_pro", 2000}, {"price_team", 8000}} {
		d.PutPrice(&stripe.Price{ID: p.id, Active: true, Type: stripe.PriceTypeRecurring, UnitAmount: p.amount,
			Currency: "usd", Recurring: &stripe.PriceRecurring{Interval: "month", IntervalCount: 1, UsageType: "licensed"}})
	}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("X-Tollgate-Plan"))
	}))
	defer app.Close()
	cfg := func() *config.Config {
		c := webhookConfig(t, app.URL, rd.URL(), d.URL())
		c.Plans["team"] = &config.Plan{Prices: []string{"price_team"}}
		c.Routes = append(c.Routes, &config.Route{Path: "/team/**", Require: config.Require{Plans: []string{"team"}}})
		return c
	}
	a, b := start(t, cfg()), start(t, cfg())
	token, err := auth.SignHS256([]byte(strings.Repeat("k", 32)), jwt.MapClaims{
		"sub": "user_new", "aud": "api", "exp": now.Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}

	if code, m := billingCall(t, a, "POST", "/checkout", "", `{"plan":"pro"}`); code != http.StatusUnauthorized {
		t.Fatalf("checkout without a token = %d %v; want 401", code, m)
	}
	code, m := billingCall(t, a, "POST", "/checkout", token, `{"plan":"pro"}`)
	if code != http.StatusOK || m["url"] == "" {
		t.Fatalf("checkout = %d %v; want 200 with a url", code, m)
	}
	sessions := d.Requests()
	created := sessions[len(sessions)-1]
	if created.Path != "/v1/checkout/sessions" || created.Form.Get("client_reference_id") != "user_new" || created.Form.Get("customer") != "" {
		t.Fatalf("last Stripe call = %s %v; want a session for user_new, not for the spoofed customer", created.Path, created.Form)
	}

	// Stripe completes the checkout: a customer, a subscription, the event.
	d.PutCustomer(&stripe.Customer{ID: "cus_new"})
	d.PutSubscription(&stripe.Subscription{ID: "sub_new", Customer: &stripe.Customer{ID: "cus_new"}, Status: "active",
		CurrentPeriodStart: now.Add(-time.Hour).Unix(), CurrentPeriodEnd: now.Add(30 * 24 * time.Hour).Unix(),
		Items: &stripe.SubscriptionItemList{Data: []*stripe.SubscriptionItem{{ID: "si_new", Quantity: 1,
			Price: &stripe.Price{ID: "price_pro", UnitAmount: 2000, Currency: "usd", Active: true, Type: stripe.PriceTypeRecurring,
				Recurring: &stripe.PriceRecurring{Interval: "month", IntervalCount: 1, UsageType: "licensed"}}}}}})
	d.PutCheckoutSession(&stripe.CheckoutSession{ID: m["id"].(string), Customer: &stripe.Customer{ID: "cus_new"},
		ClientReferenceID: "user_new", Mode: "subscription", Status: "complete", Subscription: &stripe.Subscription{ID: "sub_new"}})
	evt := newEvent(t, "evt_co_new", "checkout.session.completed", map[string]any{"id": m["id"], "object": "checkout.session"})
	if code, resp := postEvent(t, a, evt); code != 200 {
		t.Fatalf("checkout event = %d %s", code, resp)
	}

	testrig.Eventually(t, "replica b to show the pro plan", func() bool {
		code, m := billingCall(t, b, "GET", "/subscription", token, "")
		return code == http.StatusOK && m["plan"] == "pro" && m["entitled"] == true && m["customer"] == "cus_new"
	})
	// a looked the user up before the link existed (negative for 1 s).
	testrig.Eventually(t, "replica a to refuse the team route to the pro customer", func() bool {
		code, _ := callTeam(t, a, token)
		return code == http.StatusForbidden
	})
	code, m = billingCall(t, b, "POST", "/subscription/change", token, `{"plan":"team"}`)
	if code != http.StatusOK || m["applies"] != "now" {
		t.Fatalf("upgrade on b = %d %v; want 200 applies now", code, m)
	}
	// The change is announced like a webhook's (TestTwoReplicasShareState
	// holds the 1 s bound); here it must reach a at all.
	testrig.Eventually(t, "replica a to let the team plan in", func() bool {
		code, plan := callTeam(t, a, token)
		return code == http.StatusOK && plan == "team"
	})
}

func callTeam(t *testing.T, r *running, token string) (int, string) {
	t.Helper()
	return getAs(t, r, "/team/x", token)
}
