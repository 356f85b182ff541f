package billing

import (
	"net/http"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/entitlements"
)

// The trial as the billing page shows it: its end, the days left rounded
// up (so "1 day left" lasts until the very end), and whether the customer
// ever had one (which also decides whether checkout offers another).
func TestTrialFields(t *testing.T) {
	r := newRig(t)
	cases := []struct {
		name     string
		status   stripe.SubscriptionStatus
		trialEnd time.Duration // from now; 0: no trial
		wantDays any           // float64 days, or nil
	}{
		{"fourteen days", stripe.SubscriptionStatusTrialing, 14 * 24 * time.Hour, 14.0},
		{"two days and a second", stripe.SubscriptionStatusTrialing, 48*time.Hour + time.Second, 3.0},
		{"exactly two days", stripe.SubscriptionStatusTrialing, 48 * time.Hour, 2.0},
		{"two hours", stripe.SubscriptionStatusTrialing, 2 * time.Hour, 1.0},
		// The trial is over but the webhook that ends it is late.
		{"ended, still trialing", stripe.SubscriptionStatusTrialing, -time.Hour, 0.0},
		{"converted", stripe.SubscriptionStatusActive, -24 * time.Hour, nil},
		{"never had one", stripe.SubscriptionStatusActive, 0, nil},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cus, sub := "cus_T"+string(rune('a'+i)), "sub_T"+string(rune('a'+i))
			r.subscribe(cus, sub, tc.status, "price_pro_m")
			s, _ := r.double.Subscription(sub)
			if tc.trialEnd != 0 {
				s.TrialStart, s.TrialEnd = r.now.Add(-24*time.Hour).Unix(), r.now.Add(tc.trialEnd).Unix()
			}
			r.double.PutSubscription(s)
			a := r.call("GET", "/subscription", "u"+cus, cus, "")
			if a.status != http.StatusOK || a.body["trial_days_left"] != tc.wantDays || a.body["had_trial"] != (tc.trialEnd != 0) {
				t.Errorf("subscription = %s; want trial_days_left %v, had_trial %v", a.raw, tc.wantDays, tc.trialEnd != 0)
			}
			wantEnd := ""
			if tc.trialEnd != 0 {
				wantEnd = r.now.Add(tc.trialEnd).UTC().Format(time.RFC3339)
			}
			if a.str("trial_end") != wantEnd {
				t.Errorf("trial_end = %q; want %q", a.str("trial_end"), wantEnd)
			}
		})
	}
}

// A failed payment is on the billing page: how often Stripe tried, when
// it tries again, and the invoice to pay, from the state the invoice
// webhooks keep (no Stripe call on the page).
func TestSubscriptionShowsFailedPayment(t *testing.T) {
	r := newRig(t)
	r.subscribe("cus_A", "sub_A", stripe.SubscriptionStatusPastDue, "price_pro_m")
	next := r.now.Add(72 * time.Hour).UTC()
	for _, tc := range []struct {
		name     string
		failed   *entitlements.FailedInvoice
		wantNext any
	}{
		{"Stripe retries", &entitlements.FailedInvoice{ID: "in_1", AttemptCount: 2, NextPaymentAttempt: next,
			HostedInvoiceURL: "https://invoice.stripe.com/i/in_1", AmountDue: 3000, Currency: "usd"}, next.Format(time.RFC3339)},
		{"retries over", &entitlements.FailedInvoice{ID: "in_1", AttemptCount: 4,
			HostedInvoiceURL: "https://invoice.stripe.com/i/in_1", AmountDue: 3000, Currency: "usd"}, nil},
		{"paid", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := r.h.state(&call{ctx: t.Context()}, "cus_A"); err != nil {
				t.Fatal(err)
			}
			err := r.store.Update(t.Context(), "cus_A", func(cur *entitlements.State) (*entitlements.State, error) {
				next := *cur
				next.FailedInvoice = tc.failed
				return &next, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			a := r.call("GET", "/subscription", "u1", "cus_A", "")
			pf, _ := a.body["payment_failed"].(map[string]any)
			switch {
			case tc.failed == nil && a.body["payment_failed"] != nil:
				t.Errorf("payment_failed = %v; want null", a.body["payment_failed"])
			case tc.failed != nil && (pf == nil || pf["invoice"] != "in_1" || pf["attempt_count"] != float64(tc.failed.AttemptCount) ||
				pf["next_payment_attempt"] != tc.wantNext || pf["hosted_invoice_url"] != "https://invoice.stripe.com/i/in_1" ||
				pf["amount_due"] != 3000.0 || pf["currency"] != "usd"):
				t.Errorf("payment_failed = %v; want %+v, next attempt %v", pf, tc.failed, tc.wantNext)
			}
		})
	}
	if n := r.double.Count("GET", "/v1/invoices"); n != 0 {
		t.Errorf("the page read invoices from Stripe %d times; want 0", n)
	}
}
