package webhook

import (
	"testing"
	"time"
)

// In trusted payload mode (tollgate demo) the failed invoice comes from the
// signed invoice.payment_failed itself, and invoice.paid clears it.
func TestTrustedPayloadFailedInvoice(t *testing.T) {
	r := newRig(t, rigOptions{embedded: true, trusted: true})
	now := time.Now().Truncate(time.Second)
	deliver := func(id, typ string, at time.Time) {
		t.Helper()
		obj, err := Sample(typ, SampleOptions{Customer: "cus_dun", Now: at})
		if err != nil {
			t.Fatal(err)
		}
		body, err := NewEvent(id, typ, at, obj)
		if err != nil {
			t.Fatal(err)
		}
		r.mustDeliver(body, resultProcessed)
	}
	deliver("evt_dun_1", "invoice.payment_failed", now)
	fi := r.state("cus_dun").FailedInvoice
	if fi == nil || fi.ID != "in_tollgate_dun" || fi.AttemptCount != 1 || fi.HostedInvoiceURL != "https://invoice.stripe.com/i/acct_tollgate/test_in_tollgate_dun" ||
		!fi.NextPaymentAttempt.Equal(now.AddDate(0, 0, 3)) || fi.AmountDue != 1000 || fi.Currency != "usd" {
		t.Fatalf("failed invoice = %+v; want the event's invoice", fi)
	}
	deliver("evt_dun_2", "invoice.paid", now.Add(time.Second))
	if st := r.state("cus_dun"); st.FailedInvoice != nil || st.PaymentFailures != 0 {
		t.Errorf("after invoice.paid: %+v, %d failures; want none", st.FailedInvoice, st.PaymentFailures)
	}
}
