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
// the done marker and the delivery log entry (the no-log cases leave it
// out, to show its cost). Every refetch event finds Stripe changed, so
// each one writes and announces.
//
//	go test -run '^$' -bench BenchmarkDelivery -benchtime 2000x ./webhook/
func BenchmarkDelivery(b *testing.B) {
	end := time.Now().Add(time.Hour)
	for _, c := range []struct {
		name    string
		typ     string
		trusted bool
		dup     bool
		noLog   bool
	}{
		{"subscription.updated/refetch", "customer.subscription.updated", false, false, false},    // 3 Stripe GETs
		{"invoice.payment_failed/refetch", "invoice.payment_failed", false, false, false},         // 4 Stripe GETs
		{"checkout.session.completed/refetch", "checkout.session.completed", false, false, false}, // 4 Stripe GETs
		{"subscription.updated/trusted-payload", "customer.subscription.updated", true, false, false},
		{"duplicate", "customer.subscription.updated", false, true, false},
		{"subscription.updated/refetch/no-log", "customer.subscription.updated", false, false, true},
		{"duplicate/no-log", "customer.subscription.updated", false, true, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := newRig(b, rigOptions{trusted: c.trusted, noLog: c.noLog})
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

// BenchmarkDeliveryLogRecord is the delivery log's cost per delivery: one
// script (append and trim) on a real redis-server over loopback, with the
// log full (trimming one entry per write).
//
//	go test -run '^$' -bench BenchmarkDeliveryLogRecord ./webhook/
func BenchmarkDeliveryLogRecord(b *testing.B) {
	st := openStore(b, false)
	l := NewDeliveryLog(st.Client, st.Keys, 1000, 0)
	d := Delivery{Event: "evt_bench", Type: "customer.subscription.updated", Customer: "cus_bench", Result: resultProcessed,
		Status: 200, Source: SourceWebhook, DurationMS: 1.2}
	for range 1000 {
		if err := l.Record(b.Context(), d); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		if err := l.Record(b.Context(), d); err != nil {
			b.Fatal(err)
		}
	}
}
