package testrig

import (
	"net/http"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// upgradeParams moves sub_A's item si_A to price_pro, prorated at p with
// behavior.
func upgradeParams(behavior string, p int64) *stripe.SubscriptionParams {
	up := &stripe.SubscriptionParams{
		Items:             []*stripe.SubscriptionItemsParams{{ID: stripe.String("si_A"), Price: stripe.String("price_pro")}},
		ProrationBehavior: stripe.String(behavior),
		PaymentBehavior:   stripe.String("pending_if_incomplete"),
	}
	if p != 0 {
		up.ProrationDate = stripe.Int64(p)
	}
	up.AddExpand("latest_invoice")
	return up
}

// An always_invoice update bills its prorations at once, worked out from
// its own proration_date: the preview of the same change at the same date
// shows exactly that amount; a later date charges less.
func TestDoubleAlwaysInvoiceCharges(t *testing.T) {
	cases := []struct {
		name      string
		preview   int64 // proration date of the preview
		update    int64 // of the update; 0 = none sent (now)
		clock     time.Time
		wantPaid  int64
		wantLines string
	}{
		// 16 of 31 days left: −1000×16/31 + 3100×16/31 = −516 + 1600.
		{"same date", fxNow.Unix(), fxNow.Unix(), fxNow.Add(24 * time.Hour), 1084, "-516:true:price_basic 1600:true:price_pro"},
		// A day later, 15 of 31 days: −484 + 1500; the preview said 1084.
		{"no date, a day later", fxNow.Unix(), 0, fxNow.Add(24 * time.Hour), 1016, "-484:true:price_basic 1500:true:price_pro"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, sc := newBillingDouble(t)
			pv, err := sc.Invoices.Upcoming(&stripe.InvoiceUpcomingParams{Subscription: stripe.String("sub_A"),
				SubscriptionItems:             upgradeParams("always_invoice", 0).Items,
				SubscriptionProrationBehavior: stripe.String("always_invoice"), SubscriptionProrationDate: stripe.Int64(tc.preview)})
			if err != nil {
				t.Fatalf("Upcoming: %v", err)
			}
			if pv.AmountDue != 1084 || lineSummary(pv) != "-516:true:price_basic 1600:true:price_pro" || pv.BillingReason != "subscription_update" {
				t.Errorf("always_invoice preview = %d [%s] %s; want 1084, the two prorations only, subscription_update",
					pv.AmountDue, lineSummary(pv), pv.BillingReason)
			}
			d.SetClock(func() time.Time { return tc.clock })
			s, err := sc.Subscriptions.Update("sub_A", upgradeParams("always_invoice", tc.update))
			if err != nil {
				t.Fatalf("Update: %v", err)
			}
			inv := s.LatestInvoice
			if inv == nil || inv.ID == "" || inv.Status != stripe.InvoiceStatusPaid || inv.AmountPaid != tc.wantPaid ||
				inv.AmountDue != tc.wantPaid || lineSummary(inv) != tc.wantLines || inv.BillingReason != "subscription_update" {
				t.Fatalf("latest_invoice = %+v; want paid %d [%s]", inv, tc.wantPaid, tc.wantLines)
			}
			if stored, ok := d.Invoice(inv.ID); !ok || stored.AmountPaid != tc.wantPaid || stored.Customer.ID != "cus_A" {
				t.Errorf("stored invoice = %+v, %v; want cus_A's, paid %d", stored, ok, tc.wantPaid)
			}
			if p := d.PendingInvoiceItems("sub_A"); len(p) != 0 {
				t.Errorf("pending invoice items = %v; want none (invoiced at once)", p)
			}
		})
	}
}

// create_prorations leaves the prorations for the next invoice, which
// then shows them with the renewal; always_invoice sweeps them into its
// invoice; none bills nothing.
func TestDoublePendingProrations(t *testing.T) {
	d, sc := newBillingDouble(t)
	p := fxNow.Unix()
	if _, err := sc.Subscriptions.Update("sub_A", upgradeParams("create_prorations", p)); err != nil {
		t.Fatalf("Update(create_prorations): %v", err)
	}
	if got := d.PendingInvoiceItems("sub_A"); len(got) != 2 || got[0] != -516 || got[1] != 1600 {
		t.Fatalf("pending items = %v; want [-516 1600]", got)
	}
	next, err := sc.Invoices.Upcoming(&stripe.InvoiceUpcomingParams{Subscription: stripe.String("sub_A")})
	if err != nil {
		t.Fatal(err)
	}
	if next.AmountDue != 4184 || lineSummary(next) != "-516:true:price_basic 1600:true:price_pro 3100:false:price_pro" {
		t.Errorf("next invoice = %d [%s]; want 4184: the prorations and the renewal", next.AmountDue, lineSummary(next))
	}
	if next.Lines.Data[0].InvoiceItem == nil || next.Lines.Data[0].InvoiceItem.ID == "" {
		t.Errorf("pending line %+v names no invoice_item", next.Lines.Data[0])
	}

	// Back to basic a day later (15 days left), invoiced at once with the pending items.
	d.SetClock(func() time.Time { return fxNow.Add(24 * time.Hour) })
	back := upgradeParams("always_invoice", 0)
	back.Items[0].Price = stripe.String("price_basic")
	s, err := sc.Subscriptions.Update("sub_A", back)
	if err != nil {
		t.Fatal(err)
	}
	// −516 + 1600 pending, then −3100×15/31 + 1000×15/31 = −1500 + 484: 68, the day on pro.
	if inv := s.LatestInvoice; inv == nil || lineSummary(inv) != "-516:true:price_basic 1600:true:price_pro -1500:true:price_pro 484:true:price_basic" ||
		inv.Total != 68 || inv.AmountDue != 68 || inv.AmountPaid != 68 {
		t.Errorf("latest_invoice = %+v; want the pending items swept in, 68 paid", inv)
	}
	if got := d.PendingInvoiceItems("sub_A"); len(got) != 0 {
		t.Errorf("pending items after always_invoice = %v; want none", got)
	}

	swept := s.LatestInvoice.ID
	none := upgradeParams("none", 0) // to price_pro again, unprorated
	if s, err = sc.Subscriptions.Update("sub_A", none); err != nil {
		t.Fatal(err)
	}
	if got := d.PendingInvoiceItems("sub_A"); len(got) != 0 || s.LatestInvoice == nil || s.LatestInvoice.ID != swept {
		t.Errorf("proration_behavior=none: pending %v, latest_invoice %v; want none and still %s", got, s.LatestInvoice, swept)
	}
}

// pause_collection pauses and resumes invoicing without changing the
// status; Stripe resumes by itself at resumes_at.
func TestDoublePauseCollection(t *testing.T) {
	d, sc := newBillingDouble(t)
	later := fxNow.Add(48 * time.Hour).Unix()
	p := &stripe.SubscriptionParams{PauseCollection: &stripe.SubscriptionPauseCollectionParams{
		Behavior: stripe.String("void"), ResumesAt: stripe.Int64(later)}}
	s, err := sc.Subscriptions.Update("sub_A", p)
	if err != nil {
		t.Fatalf("pause: %v", err)
	}
	if s.PauseCollection == nil || s.PauseCollection.Behavior != "void" || s.PauseCollection.ResumesAt != later ||
		s.Status != stripe.SubscriptionStatusActive {
		t.Errorf("paused = %+v status %s; want void until %d, still active", s.PauseCollection, s.Status, later)
	}
	d.SetClock(func() time.Time { return time.Unix(later, 0) })
	if s, _ := sc.Subscriptions.Get("sub_A", nil); s.PauseCollection != nil {
		t.Errorf("at resumes_at pause_collection = %+v; want null (Stripe resumed)", s.PauseCollection)
	}
	d.SetClock(func() time.Time { return fxNow })
	if _, err := sc.Subscriptions.Update("sub_A", &stripe.SubscriptionParams{PauseCollection: &stripe.SubscriptionPauseCollectionParams{
		Behavior: stripe.String("keep_as_draft")}}); err != nil {
		t.Fatal(err)
	}
	unpause := &stripe.SubscriptionParams{}
	unpause.AddExtra("pause_collection", "")
	if s, err := sc.Subscriptions.Update("sub_A", unpause); err != nil || s.PauseCollection != nil {
		t.Errorf("pause_collection=\"\" = %+v, %v; want null", s, err)
	}

	const badReq = http.StatusBadRequest
	for _, tc := range []struct {
		name   string
		params *stripe.SubscriptionParams
		param  string
		msg    string
	}{
		{"no behavior", &stripe.SubscriptionParams{PauseCollection: &stripe.SubscriptionPauseCollectionParams{ResumesAt: stripe.Int64(later)}},
			"pause_collection[behavior]", "Missing required param"},
		{"bad behavior", &stripe.SubscriptionParams{PauseCollection: &stripe.SubscriptionPauseCollectionParams{Behavior: stripe.String("stop")}},
			"pause_collection[behavior]", "must be one of"},
		{"resumes in the past", &stripe.SubscriptionParams{PauseCollection: &stripe.SubscriptionPauseCollectionParams{
			Behavior: stripe.String("void"), ResumesAt: stripe.Int64(fxNow.Unix())}}, "pause_collection[resumes_at]", "in the future"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sc.Subscriptions.Update("sub_A", tc.params)
			wantStripeErr(t, err, badReq, stripe.ErrorCode(codeFor(tc.msg)), tc.param, tc.msg)
		})
	}
}

// codeFor is the error code the double sends with a message.
func codeFor(msg string) string {
	if msg == "Missing required param" {
		return "parameter_missing"
	}
	return ""
}
