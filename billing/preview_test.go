package billing

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// The number a customer is shown is the number charged: the preview asks
// Stripe with the change's own proration behaviour, and the change, a day
// later, reuses the preview's proration_date, so the double, which bills
// the update from its own parameters, charges due_now to the cent; what
// it then has for the period end is the preview's next_invoice. (Issue
// 14: the preview showed prorations plus the renewal, 47.36, while the
// change charged the prorations, 18.36.)
func TestPreviewIsWhatTheChangeCharges(t *testing.T) {
	cases := []struct {
		name       string
		proration  string // billing.upgrade_proration
		from, plan string
		keepDate   bool  // the change sends the preview's proration_date
		wantDue    int64 // previewed due_now
		wantNext   int64 // previewed next_invoice
		wantSame   bool  // charged == due_now
	}{
		// 20 of 30 days left, then a day passes: 2/3 × (90.00 − 10.00) at the preview's date.
		{"upgrade, always_invoice", "always_invoice", "price_starter_m", "team", true, 6000 - 667, 9000, true},
		// create_prorations: nothing now; the prorations wait for the renewal.
		{"upgrade, create_prorations", "create_prorations", "price_starter_m", "team", true, 0, 6000 - 667 + 9000, true},
		// A downgrade waits for the period end and bills the new price then.
		{"downgrade", "always_invoice", "price_team_m", "starter", true, 0, 1000, true},
		// Without the preview's date the change prorates a day later, 19/30:
		// 5067, not the 5333 shown; this is what proration_date is for.
		{"upgrade without the preview's date", "always_invoice", "price_starter_m", "team", false, 6000 - 667, 9000, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			r.h.cfg.Billing.UpgradeProration = tc.proration
			var clock atomic.Int64 // the double's
			clock.Store(r.now.Unix())
			r.double.SetClock(func() time.Time { return time.Unix(clock.Load(), 0) })
			r.subscribe("cus_A", "sub_A", stripe.SubscriptionStatusActive, tc.from)

			p := r.call("POST", "/subscription/preview", "u1", "cus_A", `{"plan":"`+tc.plan+`"}`)
			if p.status != http.StatusOK {
				t.Fatalf("preview = %d %s", p.status, p.raw)
			}
			due, next := r.invoiceView(p, "due_now"), r.invoiceView(p, "next_invoice")
			if due.Amount != tc.wantDue || next.Amount != tc.wantNext || due.Currency != "usd" || next.Currency != "usd" {
				t.Errorf("preview due_now %d, next_invoice %d (%s); want %d, %d", due.Amount, next.Amount, p.raw, tc.wantDue, tc.wantNext)
			}
			var lines int64
			for _, l := range due.Lines {
				lines += l.Amount
			}
			if lines != due.Amount {
				t.Errorf("due_now lines add up to %d; amount %d", lines, due.Amount)
			}

			r.now = r.now.Add(24 * time.Hour)
			clock.Store(r.now.Unix())
			body := `{"plan":"` + tc.plan + `"}`
			if tc.keepDate {
				body = `{"plan":"` + tc.plan + `","proration_date":` + strconv.FormatInt(int64(p.body["proration_date"].(float64)), 10) + `}`
			}
			c := r.call("POST", "/subscription/change", "u1", "cus_A", body)
			if c.status != http.StatusOK {
				t.Fatalf("change = %d %s", c.status, c.raw)
			}
			charged := r.chargedByDouble("sub_A")
			if got := charged == due.Amount; got != tc.wantSame {
				t.Errorf("the double charged %d for a preview of %d; want equal: %v", charged, due.Amount, tc.wantSame)
			}
			if ch, _ := c.body["charged"].(map[string]any); charged != 0 && (ch == nil || int64(ch["amount"].(float64)) != charged) {
				t.Errorf("change answered charged = %v; want the %d the double charged", c.body["charged"], charged)
			} else if charged == 0 && c.body["charged"] != nil {
				t.Errorf("change answered charged = %v; want null (nothing invoiced at once)", c.body["charged"])
			}
			if tc.wantSame {
				if got := r.nextInvoiceOfDouble("sub_A"); got != next.Amount {
					t.Errorf("the double's next invoice is %d; the preview said %d", got, next.Amount)
				}
			}
		})
	}
}

// chargedByDouble is what the double invoiced at once for the
// subscription: the amount paid of its latest invoice, 0 when none.
func (r *rig) chargedByDouble(sub string) int64 {
	r.t.Helper()
	s, ok := r.double.Subscription(sub)
	if !ok || s.LatestInvoice == nil || s.LatestInvoice.ID == "" {
		return 0
	}
	inv, ok := r.double.Invoice(s.LatestInvoice.ID)
	if !ok {
		r.t.Fatalf("the double has no invoice %s", s.LatestInvoice.ID)
	}
	return inv.AmountPaid
}

// nextInvoiceOfDouble is the amount the double will bill the subscription
// at its period end, as it stands (a pending downgrade applied).
func (r *rig) nextInvoiceOfDouble(sub string) int64 {
	r.t.Helper()
	s, _ := r.double.Subscription(sub)
	if s.Schedule != nil && s.Schedule.ID != "" {
		r.double.ApplySchedulePhase(s.Schedule.ID, 1)
	}
	api := testrig.StripeClient(r.t, r.double.URL())
	inv, err := api.Invoices.Upcoming(&stripe.InvoiceUpcomingParams{Subscription: stripe.String(sub)})
	if err != nil {
		r.t.Fatalf("the double's upcoming invoice: %v", err)
	}
	return inv.AmountDue
}
