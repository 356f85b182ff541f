package entitlements

import (
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/config"
)

// Grants beside a pause and a failed payment. A grant adds and Stripe's
// rules still hold for Stripe's subscription: a paused or unpaid
// subscription stays shut, and its 402 keeps saying why (with the invoice
// to pay) while no grant entitles the customer; granted features open
// feature-only routes, as Stripe's own entitlements do; a granted plan
// entitles on its own, as it does over a canceled subscription; and once
// the grant expires the 402 is back with its payment_url.
func TestGrantsWithPauseAndFailedPayment(t *testing.T) {
	grace := 72 * time.Hour
	now := t0.Add(grace) // beyond the grace of a period that ended at t0
	paused := sub("active", "price_pro")
	paused.CurrentPeriodEnd = t0.Add(30 * 24 * time.Hour)
	paused.PauseCollection = &PauseCollection{Behavior: "void"}
	const pay = "https://invoice.stripe.com/i/acct_1/test_in_1"
	dunning := func(status string) State {
		return State{Subscriptions: []Subscription{sub(status, "price_pro")},
			FailedInvoice: &FailedInvoice{ID: "in_1", AttemptCount: 3, HostedInvoiceURL: pay}}
	}
	feats := Grant{Features: []string{"sso"}}
	limits := Grant{Limits: map[string]int64{"calls": 5000}}
	plan := Grant{Plan: "free"}
	expired := Grant{Plan: "free", Until: now.Add(-time.Second)}
	expiring := Grant{Plan: "free", Until: now.Add(time.Hour)}
	for _, c := range []struct {
		name        string
		state       State
		grant       Grant
		req         config.Require
		at          time.Duration // after now
		wantCode    string
		wantMessage string // part of it
		wantPayURL  string
		wantPlan    string
	}{
		{"paused, granted features: subscription route", State{Subscriptions: []Subscription{paused}}, feats, reqSub, 0,
			"subscription_required", "paused", "", ""},
		{"paused, granted features: their route", State{Subscriptions: []Subscription{paused}}, feats,
			config.Require{Features: []string{"sso"}}, 0, "", "", "", ""},
		{"paused, granted limits", State{Subscriptions: []Subscription{paused}}, limits, reqSub, 0,
			"subscription_required", "paused", "", ""},
		{"paused, granted plan", State{Subscriptions: []Subscription{paused}}, plan, reqSub, 0, "", "", "", "free"},
		{"paused, granted plan: the paused plan's route", State{Subscriptions: []Subscription{paused}}, plan,
			config.Require{Plans: []string{"pro"}}, 0, "plan_required", "pro", "", "free"},
		{"past_due beyond grace, granted features", dunning("past_due"), feats, reqSub, 0,
			"subscription_required", "payment failed", pay, ""},
		{"past_due beyond grace, granted limits", dunning("past_due"), limits, reqSub, 0,
			"subscription_required", "payment failed", pay, ""},
		{"unpaid, granted plan", dunning("unpaid"), plan, reqSub, 0, "", "", "", "free"},
		{"unpaid, the granted plan expired", dunning("unpaid"), expired, reqSub, 0,
			"subscription_required", "payment failed", pay, ""},
		{"past_due, the granted plan expires later", dunning("past_due"), expiring, reqSub, 2 * time.Hour,
			"subscription_required", "payment failed", pay, ""},
		{"paused, the granted plan expires later", State{Subscriptions: []Subscription{paused}}, expiring, reqSub, 2 * time.Hour,
			"subscription_required", "paused", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.grant.ID = "gr_a"
			plans := map[string]*config.Plan{"free": {Prices: []string{"price_free"}, Features: []string{"reports"}}}
			for k, p := range testPlans {
				plans[k] = p
			}
			v := preparedGrants(&c.state, []Grant{c.grant}, NewPlans(plans), now)
			d := Rules{Grace: grace}.decide(v, c.req, now.Add(c.at))
			code, msg, url := "", "", ""
			if d.Denial != nil {
				code, msg, url = d.Denial.Code, d.Denial.Message, d.Denial.PaymentURL
			}
			if code != c.wantCode || !strings.Contains(msg, c.wantMessage) || url != c.wantPayURL || d.Plan != c.wantPlan {
				t.Errorf("decide = %q %q payment_url %q plan %q; want %q containing %q, payment_url %q, plan %q",
					code, msg, url, d.Plan, c.wantCode, c.wantMessage, c.wantPayURL, c.wantPlan)
			}
		})
	}
}
