package testrig

import (
	"net/http"
	"testing"

	"github.com/stripe/stripe-go/v76"
)

// A subscription item's quantity changes through POST
// /v1/subscription_items/{id}, prorated per proration_behavior; a repeated
// Idempotency-Key applies it once; unknown items and metered quantities
// are refused as Stripe refuses them.
func TestDoubleSubscriptionItemQuantity(t *testing.T) {
	d, sc := newBillingDouble(t)
	params := func(q int64, behavior, key string) *stripe.SubscriptionItemParams {
		p := &stripe.SubscriptionItemParams{Quantity: stripe.Int64(q), ProrationBehavior: stripe.String(behavior)}
		p.SetIdempotencyKey(key)
		return p
	}
	it, err := sc.SubscriptionItems.Update("si_A", params(3, "create_prorations", "k1"))
	if err != nil || it.Quantity != 3 || it.ID != "si_A" {
		t.Fatalf("Update = %+v, %v; want si_A with quantity 3", it, err)
	}
	if q, _ := d.ItemQuantity("si_A"); q != 3 {
		t.Errorf("stored quantity = %d; want 3", q)
	}
	// 16 of 31 days left of price_basic (1000 a month): the unused time of
	// one seat is credited (−516) and the rest of the month of three charged
	// (1548).
	if got := d.PendingInvoiceItems("sub_A"); len(got) != 2 || got[0] != -516 || got[1] != 1548 {
		t.Errorf("pending proration items = %v; want [-516 1548]", got)
	}
	pending := len(d.PendingInvoiceItems("sub_A"))
	if _, err := sc.SubscriptionItems.Update("si_A", params(3, "create_prorations", "k1")); err != nil {
		t.Fatalf("repeated Update: %v", err)
	}
	if n := len(d.PendingInvoiceItems("sub_A")); n != pending {
		t.Errorf("a repeated Idempotency-Key prorated again: %d pending items; want %d", n, pending)
	}
	if _, err := sc.SubscriptionItems.Update("si_A", params(2, "none", "k2")); err != nil {
		t.Fatalf("Update without proration: %v", err)
	}
	if q, _ := d.ItemQuantity("si_A"); q != 2 || len(d.PendingInvoiceItems("sub_A")) != pending {
		t.Errorf("after proration none: quantity %d, %d pending; want 2, %d", q, len(d.PendingInvoiceItems("sub_A")), pending)
	}
	_, err = sc.SubscriptionItems.Update("si_nope", params(2, "none", "k3"))
	wantStripeErr(t, err, http.StatusNotFound, "resource_missing", "id", "No such subscription_item")
	_, err = sc.SubscriptionItems.Update("si_A", params(2, "later", "k4"))
	wantStripeErr(t, err, http.StatusBadRequest, "", "proration_behavior", "")
}
