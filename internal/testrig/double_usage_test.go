package testrig

import (
	"testing"

	"github.com/stripe/stripe-go/v76"
)

// Usage records go through the double's idempotency layer: a retry with the
// same Idempotency-Key is replayed, not recorded twice.
func TestUsageRecordsIdempotent(t *testing.T) {
	d := NewStripeDouble(t)
	log := d.ServeUsageRecords()
	sc := StripeClient(t, d.URL())
	for range 2 {
		p := &stripe.UsageRecordParams{
			SubscriptionItem: stripe.String("si_test1"),
			Action:           stripe.String(stripe.UsageRecordActionIncrement),
			Quantity:         stripe.Int64(7),
			Timestamp:        stripe.Int64(1700000000),
		}
		p.SetIdempotencyKey("key-1")
		ur, err := sc.UsageRecords.New(p)
		if err != nil {
			t.Fatalf("UsageRecords.New: %v", err)
		}
		if ur.Quantity != 7 || ur.SubscriptionItem != "si_test1" {
			t.Errorf("answer = %+v; want quantity 7 on si_test1", ur)
		}
	}
	recs := log.Records()
	if len(recs) != 1 || recs[0].Action != "increment" || recs[0].Timestamp != 1700000000 || recs[0].IdempotencyKey != "key-1" {
		t.Errorf("records = %+v; want one increment of 7 at 1700000000 with key-1", recs)
	}
	if got := log.Sum("si_test1"); got != 7 {
		t.Errorf("Sum = %d; want 7", got)
	}
}
