package entitlements

import (
	"context"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// A missed webhook: Stripe's state changes and nobody tells tollgate. After
// a sync, decisions follow Stripe, on a replica that only watches the store.
func TestSyncRepairsDriftWithoutWebhook(t *testing.T) {
	d := testrig.NewStripeDouble(t)
	end := time.Now().Add(30 * 24 * time.Hour)
	d.PutCustomer(&stripe.Customer{ID: "cus_a"})
	d.PutCustomer(&stripe.Customer{ID: "cus_b"})
	d.PutSubscription(stripeSub("cus_a", "sub_a", "active", "price_starter_m", end))
	d.PutSubscription(stripeSub("cus_b", "sub_b", "active", "price_pro", end))
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	s := openStore(t, config.Redis{URL: rd.URL(), Prefix: "tg:"})
	src := NewStripeSource(testrig.StripeClient(t, d.URL()))
	// A customer the store knows but Stripe no longer bills.
	put(t, s, &State{Customer: "cus_gone", Subscriptions: []Subscription{{ID: "sub_old", Status: "active", Prices: []string{"price_pro"}, CurrentPeriodEnd: end}}})

	rec := &Reconciler{Store: s, Source: src, Log: quiet}
	rep, err := rec.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Customers != 3 || rep.Changed != 3 || rep.Failed != 0 {
		t.Errorf("first sync = %+v; want 3 customers, 3 written", rep)
	}

	g, _ := newGate(t, s, nil, &clock{})
	runGate(t, g)
	wantPlans := config.Require{Plans: []string{"pro"}}
	if dec := g.Decide(context.Background(), "cus_a", wantPlans, false); dec.Allowed() {
		t.Fatal("cus_a on starter allowed a pro route")
	}
	if dec := g.Decide(context.Background(), "cus_gone", reqSub, false); dec.Allowed() {
		t.Error("customer without a Stripe subscription still allowed after sync")
	}

	// Upgrade and cancellation happen in Stripe; no webhook arrives.
	d.PutSubscription(stripeSub("cus_a", "sub_a", "active", "price_pro", end))
	d.PutSubscription(stripeSub("cus_b", "sub_b", "canceled", "price_pro", end))
	rep, err = rec.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Changed != 2 {
		t.Errorf("second sync changed %d; want 2", rep.Changed)
	}
	testrig.Eventually(t, "cus_a's upgrade to be enforced", func() bool {
		return g.Decide(context.Background(), "cus_a", wantPlans, false).Allowed()
	})
	testrig.Eventually(t, "cus_b's cancellation to be enforced", func() bool {
		return !g.Decide(context.Background(), "cus_b", reqSub, false).Allowed()
	})
	rep, err = rec.Run(context.Background())
	if err != nil || rep.Changed != 0 {
		t.Errorf("third sync = %+v, %v; want nothing to repair", rep, err)
	}
}

// A webhook that wrote newer state while a sync was running wins: the
// sync's listing is older than that state and must not roll it back.
func TestSyncNeverRollsBackNewerState(t *testing.T) {
	d := testrig.NewStripeDouble(t)
	end := time.Now().Add(30 * 24 * time.Hour)
	d.PutSubscription(stripeSub("cus_w", "sub_w", "active", "price_starter_m", end))
	s := openStore(t, config.Redis{Prefix: "tg:"})
	runStart := time.Now()
	newer := &State{Customer: "cus_w", Source: "webhook:evt_1", UpdatedAt: runStart.Add(time.Second),
		Subscriptions: []Subscription{{ID: "sub_w", Status: "active", Prices: []string{"price_pro"}, CurrentPeriodEnd: end}}}
	put(t, s, newer)
	rec := &Reconciler{Store: s, Source: NewStripeSource(testrig.StripeClient(t, d.URL())), Log: quiet,
		Now: func() time.Time { return runStart }}
	rep, err := rec.Run(context.Background())
	if err != nil || rep.Changed != 0 {
		t.Errorf("sync = %+v, %v; want nothing changed", rep, err)
	}
	got, err := s.Get(context.Background(), "cus_w")
	if err != nil || got.Source != "webhook:evt_1" || got.Subscriptions[0].Prices[0] != "price_pro" {
		t.Errorf("state after sync = %+v, %v; want the webhook's newer state kept", got, err)
	}
}
