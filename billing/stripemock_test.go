package billing

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/internal/logging"
	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/proxy"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// These tests check the shape of every Stripe request the billing API
// makes against stripe-mock, which validates each request against
// Stripe's OpenAPI spec and answers a fixed fixture. stripe-mock keeps no
// state: behaviour (retries, idempotency, proration, state after a
// change) is tested on the recording double in the other billing tests.
//
// A request stripe-mock refuses comes back as HTTP 400 "Request
// validation error"; the billing API turns it into 502 billing_failed
// (or 503 billing_unavailable when it happened while reading the
// customer's state) and logs Stripe's message. Every case therefore pins
// the exact answer it expects and fails on any WARN or ERROR line logged
// while it ran, printing the billing log.
//
// Not covered here:
//   - POST subscription/preview: /v1/invoices/upcoming is gone from
//     stripe-mock v0.203.0 (built from a 2026 API version; it answers 400),
//     so neither of its two calls (subscription_proration_behavior
//     always_invoice, then none) can be checked against this stripe-mock.
//   - Stripe's billing of a change (what always_invoice charges, pending
//     prorations), pause_collection's effect and auto-resume: stripe-mock
//     keeps no state; the recording double models them
//     (internal/testrig/double_prorations.go, double_pause.go).
//   - checkout in payment mode (customer_creation): stripe-mock answers
//     every price id with its recurring price fixture, so no plan can be
//     a one-time purchase.
//   - resuming a paused subscription (POST /v1/subscriptions/{id}/resume):
//     the subscription fixture is always active.
//   - the cancel_at_period_end=true update of subscription/cancel: the
//     fixture is already set to cancel at period end, so cancelling is a
//     no-op there. The same endpoint and parameter (with false) are
//     checked by subscription/resume.
//   - a downgrade through ServeHTTP: every price fixture costs the same
//     (20.00 per month, licensed), so a change is always an upgrade; the
//     schedule calls of a downgrade are checked by calling the change
//     code below ServeHTTP instead (TestStripeMockAcceptsScheduleCalls).

const mockPrefix = "/_tollgate/billing"

// Plan prices of the stripe-mock tests. stripe-mock answers GET
// /v1/prices/{id} with its price fixture under the id asked for (active,
// recurring per month, licensed, 20.00 usd), so any id is "a monthly
// price" there; the plan holding the subscription fixture's price is built
// from what stripe-mock returns (see learnMockFixtures).
const (
	mockPricePro      = "price_mock_pro"
	mockPriceTeamBase = "price_mock_team_base"
	mockPriceTeamSeat = "price_mock_team_seat"
)

// mockFixtures is what stripe-mock answers for any customer, learnt by
// asking it once, so that the configuration follows its fixture ids (on
// v0.203.0: subscription sub_1Pgc6rB7WZ01zgkWNy0Cn5nw with one item
// si_QXhVBoJ7NQdNXh on price price_1PgafmB7WZ01zgkW6dKueIc5).
type mockFixtures struct {
	sub   *stripe.Subscription
	price string // the price of the subscription's one item
}

// learnMockFixtures lists a customer's subscriptions on stripe-mock and
// checks the properties the cases below are designed around, so that a
// new stripe-mock with other fixtures fails here, with the reason,
// instead of in a confusing answer later.
func learnMockFixtures(t *testing.T, api *client.API) mockFixtures {
	t.Helper()
	it := api.Subscriptions.List(&stripe.SubscriptionListParams{Customer: stripe.String("cus_mock_probe"),
		Status: stripe.String("all")})
	var subs []*stripe.Subscription
	for it.Next() {
		subs = append(subs, it.Subscription())
	}
	if err := it.Err(); err != nil {
		t.Fatalf("list subscriptions on stripe-mock: %v", err)
	}
	if len(subs) != 1 {
		t.Fatalf("stripe-mock lists %d subscriptions; the cases expect its one subscription fixture", len(subs))
	}
	sub := subs[0]
	var problems []string
	if sub.Status != stripe.SubscriptionStatusActive {
		problems = append(problems, fmt.Sprintf("status %q, want active (the subscription billing acts on)", sub.Status))
	}
	if !sub.CancelAtPeriodEnd {
		problems = append(problems, "cancel_at_period_end false, want true (subscription/resume updates it)")
	}
	if sub.PendingUpdate == nil {
		problems = append(problems, "pending_update null, want set (an upgrade answers 402 payment_failed)")
	}
	if sub.Schedule != nil {
		problems = append(problems, "a schedule, want none (a downgrade creates one)")
	}
	if sub.Items == nil || len(sub.Items.Data) != 1 || sub.Items.Data[0].Price == nil ||
		sub.Items.Data[0].Price.Recurring == nil || sub.Items.Data[0].Price.Recurring.Interval != "month" ||
		sub.Items.Data[0].Price.UnitAmount != 2000 {
		problems = append(problems, "items other than one licensed 20.00/month price")
	}
	p, err := api.Prices.Get(mockPricePro, nil)
	switch {
	case err != nil:
		problems = append(problems, fmt.Sprintf("GET price: %v", err))
	case p.ID != mockPricePro || !p.Active || p.Type != stripe.PriceTypeRecurring || p.Recurring == nil ||
		p.Recurring.Interval != "month" || p.Recurring.UsageType != stripe.PriceRecurringUsageTypeLicensed ||
		p.UnitAmount != 2000:
		problems = append(problems, fmt.Sprintf("price fixture %s %v %s %+v %d, want the id asked for, active, licensed 20.00/month",
			p.ID, p.Active, p.Type, p.Recurring, p.UnitAmount))
	}
	if len(problems) > 0 {
		t.Fatalf("stripe-mock's fixtures changed; revisit these tests:\n  %s", strings.Join(problems, "\n  "))
	}
	return mockFixtures{sub: sub, price: sub.Items.Data[0].Price.ID}
}

// mockRig is a billing Handler whose Stripe client talks to stripe-mock,
// on a real redis-server.
type mockRig struct {
	h     *Handler
	store *entitlements.RedisStore
	logs  *testrig.LogBuffer
	fx    mockFixtures
}

func newMockRig(t *testing.T) *mockRig {
	t.Helper()
	mock := testrig.StartStripeMock(t)
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	r := &mockRig{logs: &testrig.LogBuffer{}}
	log := logging.New(config.Log{Level: "debug", Format: "json"}, r.logs)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("billing log:\n%s", r.logs.String())
		}
	})
	api := testrig.StripeClient(t, mock.URL())
	r.fx = learnMockFixtures(t, api)

	st, err := store.Open(config.Redis{URL: rd.URL(), Prefix: "bm:", DialTimeout: time.Second,
		ReadTimeout: time.Second, WriteTimeout: time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r.store = entitlements.NewRedisStore(st)

	cfg := config.Default()
	cfg.Stripe.SecretKey = testrig.StripeTestKey
	cfg.Billing.TrialDays = 14
	cfg.Billing.SuccessURL = "https://app.test/billing?s={CHECKOUT_SESSION_ID}"
	cfg.Billing.CancelURL = "https://app.test/billing?cancelled"
	cfg.Billing.ReturnURL = "https://app.test/billing"
	cfg.Plans = map[string]*config.Plan{
		// basic holds the subscription fixture's price, so the billing API
		// recognises stripe-mock's subscription as the caller's plan.
		"basic": {Prices: []string{r.fx.price}},
		// pro costs what basic costs (every price fixture is 20.00/month):
		// a change to it counts as an upgrade that replaces the one item.
		"pro": {Prices: []string{mockPricePro}},
		// team has two prices (40.00/month): an upgrade that replaces the
		// item and adds one, and a checkout with two line items.
		"team": {Prices: []string{mockPriceTeamBase, mockPriceTeamSeat}},
	}
	src := entitlements.NewStripeSource(api)
	gate := entitlements.New(entitlements.Options{Store: r.store, Source: src, Plans: cfg.Plans,
		Gating: cfg.Gating, Logger: log})
	if r.h, err = New(Options{Config: cfg, Stripe: api, Store: r.store, Source: src, Gate: gate, Logger: log}); err != nil {
		t.Fatal(err)
	}
	return r
}

// request builds a request as the proxy hands it to a mount with Auth:
// the verified caller is on its context.
func (r *mockRig) request(method, path string, id auth.Identity, body string) *http.Request {
	req := httptest.NewRequest(method, mockPrefix+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return req.WithContext(auth.NewContext(req.Context(), id))
}

// serve sends one request through ServeHTTP and fails the test on any
// WARN or ERROR line logged meanwhile: a Stripe call stripe-mock refused
// is logged there with its message.
func (r *mockRig) serve(t *testing.T, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	before := len(r.logs.String())
	rec := httptest.NewRecorder()
	r.h.ServeHTTP(rec, req)
	r.checkLog(t, before)
	return rec
}

// checkLog fails t on a WARN or ERROR line logged since offset from.
func (r *mockRig) checkLog(t *testing.T, from int) {
	t.Helper()
	for _, line := range strings.Split(r.logs.String()[from:], "\n") {
		if strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`) {
			t.Errorf("logged: %s", line)
		}
	}
}

// mockErrorCode is the error code of a billing answer, "" for success.
func mockErrorCode(body []byte) string {
	var e struct {
		Error struct{ Code string }
	}
	_ = json.Unmarshal(body, &e)
	return e.Error.Code
}

// TestStripeMockAcceptsBillingCalls drives every billing call whose Stripe
// endpoints stripe-mock serves through ServeHTTP. Which Stripe requests
// each case makes is listed with it; every case that knows the caller's
// customer for the first time also reads its state (GET
// /v1/customers/{id}, GET /v1/subscriptions?status=all, GET
// /v1/entitlements/active_entitlements), and every write re-reads it.
func TestStripeMockAcceptsBillingCalls(t *testing.T) {
	r := newMockRig(t)
	// cus_mock_fresh is in the store with no subscription and no trial yet,
	// so its checkout names the customer and offers the trial; stripe-mock
	// itself gives every customer the active subscription fixture.
	err := r.store.Update(t.Context(), "cus_mock_fresh", func(*entitlements.State) (*entitlements.State, error) {
		return &entitlements.State{Customer: "cus_mock_fresh", Source: "test"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	newUser := auth.Identity{User: "user_new"}
	fresh := auth.Identity{User: "user_fresh", Customer: "cus_mock_fresh"}
	subscribed := auth.Identity{User: "user_sub", Customer: "cus_mock_subscribed"}
	recent := time.Now().Add(-time.Minute).Unix()

	// The cases below tell an accepted request from a refused one by the
	// billing answer: check first that a request stripe-mock refuses does
	// come back as the 502 billing_failed they would fail on.
	t.Run("a refused request is billing_failed", func(t *testing.T) {
		p := &stripe.SubscriptionParams{CancelAtPeriodEnd: stripe.Bool(false)}
		p.AddExtra("tollgate_no_such_parameter", "1")
		_, err := r.h.api.Subscriptions.Update(r.fx.sub.ID, p)
		herr := stripeFailure(err)
		if err == nil || !strings.Contains(err.Error(), "validation") || herr.Status != http.StatusBadGateway ||
			herr.Code != "billing_failed" {
			t.Fatalf("an unknown parameter: err %v, answer %d %s; want stripe-mock's validation error as 502 billing_failed",
				err, herr.Status, herr.Code)
		}
	})

	for _, c := range []struct {
		name, method, path string
		id                 auth.Identity
		body               string
		header             map[string]string
		wantStatus         int
		wantCode           string // error code; "" for success
		check              func(t *testing.T, body []byte)
	}{
		{
			// GET /v1/prices/{id}; POST /v1/checkout/sessions in subscription
			// mode, no customer, trial_period_days, subscription_data.metadata,
			// client_reference_id, an Idempotency-Key derived from the client's.
			name: "checkout/new user", method: "POST", path: "/checkout", id: newUser,
			body: `{"plan":"pro"}`, header: map[string]string{"Idempotency-Key": "click-1"},
			wantStatus: http.StatusOK, check: wantSessionURL,
		},
		{
			// Two line items, with customer (no customer_creation) and trial.
			name: "checkout/customer without a subscription", method: "POST", path: "/checkout", id: fresh,
			body: `{"plan":"team","interval":"month"}`, wantStatus: http.StatusOK, check: wantSessionURL,
		},
		{
			// The state lookup reaches the three reads of the customer's
			// state; stripe-mock's subscription fixture is on basic.
			name: "checkout/already subscribed", method: "POST", path: "/checkout", id: subscribed,
			body: `{"plan":"pro"}`, wantStatus: http.StatusConflict, wantCode: "already_subscribed",
		},
		{
			// POST /v1/billing_portal/sessions with customer and return_url.
			name: "portal", method: "POST", path: "/portal", id: subscribed,
			wantStatus: http.StatusOK, check: wantSessionURL,
		},
		{
			// GET /v1/subscriptions/{id}; POST /v1/subscriptions/{id} with
			// cancel_at_period_end=false, which stripe-mock reflects.
			name: "subscription/resume", method: "POST", path: "/subscription/resume", id: subscribed,
			wantStatus: http.StatusOK, check: func(t *testing.T, body []byte) {
				var a lifecycleAnswer
				if err := json.Unmarshal(body, &a); err != nil || a.Subscription != r.fx.sub.ID || a.CancelAtPeriodEnd {
					t.Errorf("resume = %s; want subscription %s no longer cancelling", body, r.fx.sub.ID)
				}
			},
		},
		{
			// GET /v1/subscriptions/{id} only: the fixture already cancels at
			// period end, so there is nothing to update (see the file comment).
			name: "subscription/cancel", method: "POST", path: "/subscription/cancel", id: subscribed,
			wantStatus: http.StatusOK, check: func(t *testing.T, body []byte) {
				var a lifecycleAnswer
				if err := json.Unmarshal(body, &a); err != nil || a.Subscription != r.fx.sub.ID || !a.CancelAtPeriodEnd {
					t.Errorf("cancel = %s; want subscription %s cancelling at period end", body, r.fx.sub.ID)
				}
			},
		},
		{
			// GET /v1/invoices with customer, limit and starting_after.
			name: "invoices", method: "GET", path: "/invoices?limit=5&starting_after=in_mock_previous", id: subscribed,
			wantStatus: http.StatusOK, check: func(t *testing.T, body []byte) {
				var a invoicesAnswer
				if err := json.Unmarshal(body, &a); err != nil || len(a.Data) == 0 || !strings.HasPrefix(a.Data[0].ID, "in_") {
					t.Errorf("invoices = %s; want stripe-mock's invoice fixture", body)
				}
			},
		},
		{
			// GET /v1/subscriptions/{id}; the fixture cancels at period end,
			// so the pause is refused before any write (the update's shape is
			// checked in TestStripeMockAcceptsScheduleCalls).
			name: "subscription/pause of a canceling subscription", method: "POST", path: "/subscription/pause", id: subscribed,
			body: `{}`, wantStatus: http.StatusConflict, wantCode: "subscription_canceling",
		},
		{
			// The state the gate enforces; no write.
			name: "subscription", method: "GET", path: "/subscription", id: subscribed,
			wantStatus: http.StatusOK, check: func(t *testing.T, body []byte) {
				var a subscriptionAnswer
				if err := json.Unmarshal(body, &a); err != nil || a.Subscription != r.fx.sub.ID || a.Plan != "basic" || a.Status != "active" {
					t.Errorf("subscription = %s; want %s on basic, active", body, r.fx.sub.ID)
				}
			},
		},
		{
			// GET /v1/subscriptions/{id}, GET /v1/prices/{id}; POST
			// /v1/subscriptions/{id} with items[0][id]+[price],
			// proration_behavior, proration_date (the client's),
			// payment_behavior=pending_if_incomplete, expand[]=latest_invoice.
			// The fixture is set to cancel at period end, so the API refuses
			// the change after reading the subscription and prices; the
			// update's own shape is checked in TestStripeMockAcceptsScheduleCalls.
			name: "subscription/change of a canceling subscription", method: "POST", path: "/subscription/change", id: subscribed,
			body:       fmt.Sprintf(`{"plan":"pro","proration_date":%d}`, recent),
			wantStatus: http.StatusConflict, wantCode: "subscription_canceling",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := r.request(c.method, c.path, c.id, c.body)
			for k, v := range c.header {
				req.Header.Set(k, v)
			}
			rec := r.serve(t, req)
			body := rec.Body.Bytes()
			if rec.Code != c.wantStatus || mockErrorCode(body) != c.wantCode {
				t.Fatalf("%s %s = %d %s; want %d %q", c.method, c.path, rec.Code, body, c.wantStatus, c.wantCode)
			}
			if c.check != nil {
				c.check(t, body)
			}
		})
	}
}

func wantSessionURL(t *testing.T, body []byte) {
	t.Helper()
	var a sessionAnswer
	if err := json.Unmarshal(body, &a); err != nil || a.ID == "" || !strings.HasPrefix(a.URL, "https://") {
		t.Errorf("session answer = %s; want stripe-mock's session id and url", body)
	}
}

// TestStripeMockAcceptsScheduleCalls checks the subscription schedule
// calls of a plan change. Through ServeHTTP every change on stripe-mock is
// an upgrade (all price fixtures cost the same) and its subscription has
// no schedule, so these cases call the change code one level below
// ServeHTTP, on the subscription and prices read from stripe-mock, with
// what its fixtures cannot express set by hand: a downgrade, and a
// subscription that already has a schedule.
func TestStripeMockAcceptsScheduleCalls(t *testing.T) {
	r := newMockRig(t)
	id := auth.Identity{User: "user_sched", Customer: "cus_mock_sched"}
	// planned works out a change to pro as change does, on a fresh call.
	planned := func(t *testing.T, plan string) (*call, *plannedChange) {
		t.Helper()
		req := r.request("POST", "/subscription/change", id, "")
		req.Header.Set("Idempotency-Key", "sched-"+t.Name())
		c := &call{r: req, ctx: req.Context(), id: id}
		before := len(r.logs.String())
		pc, herr := r.h.plan(c, changeRequest{Plan: plan})
		r.checkLog(t, before)
		if herr != nil {
			t.Fatalf("plan(%s) = %v; want a planned change", plan, herr)
		}
		if !pc.upgrade {
			t.Fatalf("plan(%s) is a downgrade; the cases assume stripe-mock's equal prices make it an upgrade", plan)
		}
		// stripe-mock v0.203.0 answers 0 for the period fields; give the
		// phases the dates a real subscription would have.
		now := time.Now().Unix()
		pc.sub.CurrentPeriodStart, pc.sub.CurrentPeriodEnd = now-10*86400, now+20*86400
		return c, pc
	}
	for _, tc := range []struct {
		name string
		plan string // default pro
		run  func(c *call, pc *plannedChange) *proxy.HTTPError
	}{
		{
			// POST /v1/subscription_schedules with from_subscription, then
			// POST /v1/subscription_schedules/{id} with end_behavior=release
			// and two phases (items[][price]+[quantity], start_date,
			// end_date, iterations, proration_behavior=none).
			name: "downgrade creates a schedule", run: func(c *call, pc *plannedChange) *proxy.HTTPError {
				pc.upgrade = false
				return r.h.downgrade(c, pc)
			},
		},
		{
			// GET /v1/subscription_schedules/{id}, then the phases update.
			name: "downgrade updates the pending schedule", run: func(c *call, pc *plannedChange) *proxy.HTTPError {
				pc.upgrade = false
				pc.sub.Schedule = &stripe.SubscriptionSchedule{ID: "sub_sched_mock_pending"}
				return r.h.downgrade(c, pc)
			},
		},
		{
			// POST /v1/subscription_schedules/{id}/release, then the upgrade's
			// POST /v1/subscriptions/{id} (402 on the fixture's pending_update).
			name: "upgrade releases the pending schedule", run: func(c *call, pc *plannedChange) *proxy.HTTPError {
				pc.sub.Schedule = &stripe.SubscriptionSchedule{ID: "sub_sched_mock_pending"}
				_, herr := r.h.upgrade(c, pc)
				if herr != nil && herr.Code == "payment_failed" && herr.Err == nil {
					return nil
				}
				return herr
			},
		},
		{
			// POST /v1/subscriptions/{id} with pause_collection[behavior]=void
			// and pause_collection[resumes_at] (subscription/pause).
			name: "pause collection", run: func(c *call, pc *plannedChange) *proxy.HTTPError {
				if _, err := r.h.pauseCollection(c, pc.sub, time.Now().Add(7*24*time.Hour).Unix()); err != nil {
					return stripeFailure(err)
				}
				return nil
			},
		},
		{
			// POST /v1/subscriptions/{id} with cancel_at_period_end=false and
			// pause_collection="" (unset), as subscription/resume sends for a
			// paused, canceling subscription (the fixture is never paused).
			name: "resume a paused collection", run: func(c *call, pc *plannedChange) *proxy.HTTPError {
				pc.sub.PauseCollection = &stripe.SubscriptionPauseCollection{Behavior: "void"}
				pc.sub.CancelAtPeriodEnd = true
				if _, err := r.h.keep(c, pc.sub); err != nil {
					return stripeFailure(err)
				}
				return nil
			},
		},
		{
			// GET /v1/subscription_schedules/{id}, then POST
			// /v1/subscription_schedules/{id}/release: choosing the current
			// plan while a downgrade is pending.
			name: "withdraw a pending downgrade", run: func(c *call, pc *plannedChange) *proxy.HTTPError {
				pc.sub.Schedule = &stripe.SubscriptionSchedule{ID: "sub_sched_mock_pending"}
				if _, err := r.h.scheduledChange(c, pc.sub.Schedule.ID); err != nil {
					return stripeFailure(err)
				}
				return r.h.withdraw(c, pc)
			},
		},
		{
			// POST /v1/subscriptions/{id} with items[0][id]+[price],
			// items[1][price]+[quantity] (an added item), proration_behavior,
			// proration_date, payment_behavior=pending_if_incomplete and
			// expand[]=latest_invoice. stripe-mock accepts it; its fixture
			// carries a pending_update, which the API reads as an upgrade
			// whose payment failed (402 without a cause, not a refusal).
			name: "upgrade adding an item", plan: "team", run: func(c *call, pc *plannedChange) *proxy.HTTPError {
				_, herr := r.h.upgrade(c, pc)
				if herr != nil && herr.Code == "payment_failed" && herr.Err == nil {
					return nil
				}
				return herr
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := tc.plan
			if plan == "" {
				plan = "pro"
			}
			c, pc := planned(t, plan)
			before := len(r.logs.String())
			herr := tc.run(c, pc)
			r.checkLog(t, before)
			if herr != nil {
				t.Fatalf("%s: %d %s: %v", tc.name, herr.Status, herr.Code, herr.Err)
			}
		})
	}
}
