package testrig

import (
	"net/http"
	"testing"

	"github.com/stripe/stripe-go/v76"
)

func TestDoubleCheckoutSession(t *testing.T) {
	d := NewStripeDouble(t)
	sc := StripeClient(t, d.URL())
	d.PutSubscription(&stripe.Subscription{ID: "sub_T", Status: "trialing", TrialEnd: 1700000000,
		Customer: &stripe.Customer{ID: "cus_A"}})
	d.PutCheckoutSession(&stripe.CheckoutSession{ID: "cs_test_1", Customer: &stripe.Customer{ID: "cus_A"},
		ClientReferenceID: "user_1", Mode: "subscription", Status: "complete",
		Subscription: &stripe.Subscription{ID: "sub_T"}})

	plain, err := sc.CheckoutSessions.Get("cs_test_1", nil)
	if err != nil {
		t.Fatalf("CheckoutSessions.Get: %v", err)
	}
	if plain.Customer == nil || plain.Customer.ID != "cus_A" || plain.ClientReferenceID != "user_1" ||
		plain.Subscription == nil || plain.Subscription.ID != "sub_T" || plain.Subscription.Status != "" {
		t.Errorf("session = customer %v, ref %q, subscription %+v; want cus_A, user_1, sub_T as an id", plain.Customer, plain.ClientReferenceID, plain.Subscription)
	}
	p := &stripe.CheckoutSessionParams{}
	p.AddExpand("subscription")
	expanded, err := sc.CheckoutSessions.Get("cs_test_1", p)
	if err != nil {
		t.Fatalf("CheckoutSessions.Get(expand subscription): %v", err)
	}
	if s := expanded.Subscription; s == nil || s.Status != "trialing" || s.TrialEnd != 1700000000 {
		t.Errorf("expanded subscription = %+v; want the double's sub_T, trialing", s)
	}
	_, err = sc.CheckoutSessions.Get("cs_missing", nil)
	if se := stripeErr(t, err); se.HTTPStatusCode != http.StatusNotFound {
		t.Errorf("missing session: status %d; want 404", se.HTTPStatusCode)
	}
}

func TestDoubleInvoices(t *testing.T) {
	d := NewStripeDouble(t)
	sc := StripeClient(t, d.URL())
	for _, in := range []*stripe.Invoice{
		{ID: "in_old", Customer: &stripe.Customer{ID: "cus_A"}, Status: "open", AttemptCount: 1, Created: 100},
		{ID: "in_new", Customer: &stripe.Customer{ID: "cus_A"}, Status: "open", AttemptCount: 3, Created: 200},
		{ID: "in_paid", Customer: &stripe.Customer{ID: "cus_A"}, Status: "paid", Paid: true, Created: 300},
		{ID: "in_other", Customer: &stripe.Customer{ID: "cus_B"}, Status: "open", Created: 400},
	} {
		d.PutInvoice(in)
	}
	got, err := sc.Invoices.Get("in_new", nil)
	if err != nil || got.AttemptCount != 3 || got.Customer == nil || got.Customer.ID != "cus_A" {
		t.Fatalf("Invoices.Get(in_new) = %+v, %v; want attempt 3 of cus_A", got, err)
	}
	lp := &stripe.InvoiceListParams{Customer: stripe.String("cus_A"), Status: stripe.String("open")}
	it := sc.Invoices.List(lp)
	var ids []string
	for it.Next() {
		ids = append(ids, it.Invoice().ID)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 || ids[0] != "in_new" || ids[1] != "in_old" {
		t.Errorf("open invoices of cus_A = %v; want [in_new in_old] (newest first)", ids)
	}
}
