package entitlements

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

const seatDelay = time.Minute

var seatPlans = map[string]*config.Plan{"team": {Prices: []string{"price_team"}, Seats: config.SeatsQuantity}}

// seatSyncRig is a customer on a per-seat subscription (si_team, quantity
// 1) in the double and in the store, and a clock the test moves.
type seatSyncRig struct {
	d     *testrig.StripeDouble
	clk   *clock
	addr  string
	store *RedisStore
}

func newSeatSyncRig(t *testing.T) *seatSyncRig {
	t.Helper()
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	r := &seatSyncRig{d: testrig.NewStripeDouble(t), clk: &clock{}, addr: rd.Addr(),
		store: openStore(t, config.Redis{URL: rd.URL(), Prefix: "tg:"})}
	r.d.SetClock(r.clk.now)
	now := time.Now()
	r.d.PutPrice(&stripe.Price{ID: "price_team", Type: stripe.PriceTypeRecurring, UnitAmount: 1000, Currency: "usd",
		Recurring: &stripe.PriceRecurring{Interval: "month", IntervalCount: 1, UsageType: "licensed"}})
	r.d.PutCustomer(&stripe.Customer{ID: "cus_s"})
	r.d.PutSubscription(&stripe.Subscription{ID: "sub_s", Customer: &stripe.Customer{ID: "cus_s"}, Status: "active",
		CurrentPeriodStart: now.Add(-24 * time.Hour).Unix(), CurrentPeriodEnd: now.Add(29 * 24 * time.Hour).Unix(),
		Items: &stripe.SubscriptionItemList{Data: []*stripe.SubscriptionItem{{ID: "si_team", Quantity: 1, Price: &stripe.Price{ID: "price_team"}}}}})
	r.setStoredQuantity(t, 1)
	return r
}

// setStoredQuantity writes the customer's state as the webhook would after
// a quantity change.
func (r *seatSyncRig) setStoredQuantity(t *testing.T, q int64) {
	t.Helper()
	put(t, r.store, &State{Customer: "cus_s", Subscriptions: []Subscription{{ID: "sub_s", Status: StatusActive,
		Prices: []string{"price_team"}, Items: []Item{{ID: "si_team", Price: "price_team", Quantity: q}},
		CurrentPeriodEnd: time.Now().Add(29 * 24 * time.Hour)}}})
}

// replica is one replica's Seats and SeatSync.
func (r *seatSyncRig) replica(t *testing.T) (seatReplica, *SeatSync) {
	t.Helper()
	s := newSeatReplica(t, r.addr, SeatOptions{SyncDelay: seatDelay, Now: r.clk.now})
	return s, NewSeatSync(SeatSyncOptions{Seats: s.Seats, Store: r.store, Plans: seatPlans,
		Stripe: NewStripeQuantities(testrig.StripeClient(t, r.d.URL())), Proration: "create_prorations", Logger: quiet})
}

// updates lists the quantity updates Stripe received (quantity, key,
// status), in order.
func (r *seatSyncRig) updates() []testrig.RecordedRequest {
	var out []testrig.RecordedRequest
	for _, q := range r.d.Requests() {
		if q.Method == http.MethodPost && strings.HasPrefix(q.Path, "/v1/subscription_items/") {
			out = append(out, q)
		}
	}
	return out
}

func (r *seatSyncRig) quantity(t *testing.T) int64 {
	t.Helper()
	q, ok := r.d.ItemQuantity("si_team")
	if !ok {
		t.Fatal("si_team is gone from the double")
	}
	return q
}

func takeSeats(t *testing.T, s seatReplica, users ...string) {
	t.Helper()
	for _, u := range users {
		if err := s.Take(context.Background(), "cus_s", u, -1); err != nil {
			t.Fatalf("take %s: %v", u, err)
		}
	}
}

// The item's quantity follows the seats in use: changes within one delay
// are one update, sent a delay after the first of them, with the
// configured proration and a key naming customer, item, quantity and
// generation; nothing is sent when nothing changed.
func TestSeatSyncFollowsSeatsInUse(t *testing.T) {
	r := newSeatSyncRig(t)
	s, sy := r.replica(t)
	ctx := context.Background()
	takeSeats(t, s, "ann", "bob", "cy")
	sy.Round(ctx)
	if n := len(r.updates()); n != 0 {
		t.Fatalf("%d updates before the delay passed; want 0", n)
	}
	r.clk.advance(seatDelay)
	sy.Round(ctx)
	ups := r.updates()
	if len(ups) != 1 || r.quantity(t) != 3 {
		t.Fatalf("after the delay: %d updates, quantity %d; want 1 update to 3", len(ups), r.quantity(t))
	}
	if f := ups[0].Form; f.Get("quantity") != "3" || f.Get("proration_behavior") != "create_prorations" ||
		!strings.HasPrefix(ups[0].IdempotencyKey, "tg-seats-cus_s-si_team-3-") {
		t.Errorf("update = %v key %q; want quantity 3, create_prorations, key tg-seats-cus_s-si_team-3-<gen>", f, ups[0].IdempotencyKey)
	}
	r.setStoredQuantity(t, 3)
	if ok, _, err := s.Release(ctx, "cus_s", "bob"); !ok || err != nil {
		t.Fatal(err)
	}
	sy.Round(ctx)
	r.clk.advance(seatDelay)
	sy.Round(ctx)
	if n, q := len(r.updates()), r.quantity(t); n != 2 || q != 2 {
		t.Fatalf("after a release: %d updates, quantity %d; want 2 updates, quantity 2", n, q)
	}
	r.setStoredQuantity(t, 2)
	// A newcomer who is released within the same delay: no change to bill.
	takeSeats(t, s, "dee")
	if _, _, err := s.Release(ctx, "cus_s", "dee"); err != nil {
		t.Fatal(err)
	}
	r.clk.advance(seatDelay)
	sy.Round(ctx)
	sy.Round(ctx)
	if n := len(r.updates()); n != 2 {
		t.Errorf("a seat taken and released within one delay sent %d updates in all; want still 2", n)
	}
}

// Stripe fails (a refusal, then an answer lost after the update was
// applied): the update is retried later, never lost, and the retry of the
// lost answer sends the same Idempotency-Key, so Stripe applies it once.
func TestSeatSyncRetriesStripeFailures(t *testing.T) {
	r := newSeatSyncRig(t)
	s, sy := r.replica(t)
	ctx := context.Background()
	takeSeats(t, s, "ann", "bob")
	f := testrig.FaultFor(http.StatusBadRequest)
	f.PathPrefix = "/v1/subscription_items/"
	r.d.FailNextWith(1, f)
	r.clk.advance(seatDelay)
	sy.Round(ctx)
	if q := r.quantity(t); q != 1 || len(r.updates()) != 1 {
		t.Fatalf("after a refused update: quantity %d, %d updates; want 1, 1", q, len(r.updates()))
	}
	sy.Round(ctx)
	if n := len(r.updates()); n != 1 {
		t.Errorf("retried at once: %d updates; want a backoff", n)
	}
	r.clk.advance(seatDelay)
	sy.Round(ctx)
	if q := r.quantity(t); q != 2 {
		t.Fatalf("after the retry: quantity %d; want 2", q)
	}

	takeSeats(t, s, "cy")
	r.d.TimeoutAfterRecord(1, 1)
	r.clk.advance(seatDelay)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	sy.Round(short)
	cancel()
	r.d.Reset()
	if _, err := s.st.rdb.ZScore(ctx, s.st.dueKey(), "cus_s").Result(); err != nil {
		t.Fatalf("the update whose answer was lost is not due again: %v", err)
	}
	r.clk.advance(seatDelay / 2)
	sy.Round(ctx) // not due yet, and no sweep: the retry was put back
	if ups := r.updates(); ups[len(ups)-1].Form.Get("quantity") != "3" || len(ups) != 3 {
		t.Fatalf("updates after a lost answer = %d; want 3, the last one to quantity 3", len(ups))
	}
	r.clk.advance(seatDelay)
	sy.Round(ctx)
	ups := r.updates()
	last, prev := ups[len(ups)-1], ups[len(ups)-2]
	if r.quantity(t) != 3 || last.Form.Get("quantity") != "3" || last.IdempotencyKey != prev.IdempotencyKey || last.Status != http.StatusOK {
		t.Errorf("after a lost answer: quantity %d, last two updates %q %q (%d); want 3, the same key twice, 200",
			r.quantity(t), prev.IdempotencyKey, last.IdempotencyKey, last.Status)
	}
}

// Two replicas run the sync at the same moment: one of them updates Stripe.
func TestSeatSyncOnTwoReplicas(t *testing.T) {
	r := newSeatSyncRig(t)
	a, syA := r.replica(t)
	b, syB := r.replica(t)
	takeSeats(t, a, "ann", "bob")
	takeSeats(t, b, "cy", "dee")
	r.d.Delay(50 * time.Millisecond) // the two runs overlap
	r.clk.advance(seatDelay)
	var wg sync.WaitGroup
	for _, sy := range []*SeatSync{syA, syB, syA, syB} {
		wg.Go(func() { sy.Round(context.Background()) })
	}
	wg.Wait()
	if ups := r.updates(); len(ups) != 1 || r.quantity(t) != 4 {
		t.Errorf("%d updates, quantity %d; want one update to 4", len(ups), r.quantity(t))
	}
}

// A due mark lost between the seat's change and the mark (a crash, a
// failed write) is put back by the sweep.
func TestSeatSyncSweepFindsLostMarks(t *testing.T) {
	r := newSeatSyncRig(t)
	s, sy := r.replica(t)
	ctx := context.Background()
	sy.Round(ctx) // the first round sweeps, finding nothing
	takeSeats(t, s, "ann", "bob")
	if err := s.st.rdb.Del(ctx, s.st.dueKey()).Err(); err != nil {
		t.Fatal(err)
	}
	r.clk.advance(sweepEvery / 2)
	sy.Round(ctx)
	if n := len(r.updates()); n != 0 {
		t.Fatalf("%d updates without a mark before the sweep; want 0", n)
	}
	r.clk.advance(sweepEvery / 2)
	sy.Round(ctx)
	if q := r.quantity(t); q != 2 {
		t.Errorf("after the sweep: quantity %d; want 2", q)
	}
}
