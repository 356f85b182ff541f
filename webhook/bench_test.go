package webhook

import (
	"fmt"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// BenchmarkDelivery measures one whole delivery over HTTP, from the POST to
// the answer: verification, the ledger, the Stripe reads (from the double
// on loopback: add Stripe's own latency per call in production), the
// atomic store update on a real redis-server with its announcement, and
// the done marker. Every refetch event finds Stripe changed, so each one
// writes and announces.
//
//	go test -run '^$' -bench BenchmarkDelivery -benchtime 2000x ./webhook/
func BenchmarkDelivery(b *testing.B) {
	end := time.Now().Add(time.Hour)
	for _, c := range []struct {
		name    string
		typ     string
		trusted bool
		dup     bool
	}{
		{"subscription.updated/refetch", "customer.subscription.updated", false, false},    // 3 Stripe GETs
		{"invoice.payment_failed/refetch", "invoice.payment_failed", false, false},         // 4 Stripe GETs
		{"checkout.session.completed/refetch", "checkout.session.completed", false, false}, // 4 Stripe GETs
		{"subscription.updated/trusted-payload", "customer.subscription.updated", true, false},
		{"duplicate", "customer.subscription.updated", false, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := newRig(b, rigOptions{trusted: c.trusted})
			if !c.trusted {
				r.double.PutCustomer(&stripe.Customer{ID: "cus_bench"})
				r.double.PutCheckoutSession(&stripe.CheckoutSession{ID: "cs_test_tollgate_bench",
					Customer: &stripe.Customer{ID: "cus_bench"}, ClientReferenceID: "user_bench",
					Metadata: map[string]string{"user_id": "user_bench"}})
			}
			bodies := make([][]byte, b.N)
			for i := range bodies {
				id := fmt.Sprintf("evt_bench_%d", i)
				if c.dup {
					id = "evt_bench_dup"
				}
				o := SampleOptions{Customer: "cus_bench", Price: fmt.Sprint("price_", i%2), User: "user_bench"}
				bodies[i] = event(b, id, c.typ, time.Now(), sample(b, c.typ, o))
			}
			if c.dup {
				r.mustDeliver(bodies[0], resultProcessed)
			}
			b.ResetTimer()
			for i := range b.N {
				if !c.trusted {
					b.StopTimer()
					r.double.PutSubscription(sub("sub_bench", "cus_bench", "active", fmt.Sprint("price_", i%2), end))
					b.StartTimer()
				}
				if code, resp := r.deliver(bodies[i]); code != 200 {
					b.Fatalf("delivery %d = %d %s", i, code, resp)
				}
			}
		})
	}
}
