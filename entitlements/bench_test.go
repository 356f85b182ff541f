package entitlements

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/config"
)

// BenchmarkDecideCached is the full decision for a customer in memory: the
// cost tollgate adds to every gated request.
func BenchmarkDecideCached(b *testing.B) {
	g := New(Options{Store: nil, Plans: testPlans, Gating: gating(), Logger: quiet})
	now := time.Now()
	g.now = func() time.Time { return now }
	g.confirmed.Store(now.UnixNano())
	st := &State{Customer: "cus_bench", Subscriptions: []Subscription{{ID: "s", Status: "active",
		Prices: []string{"price_pro"}, CurrentPeriodEnd: now.Add(time.Hour)}}}
	g.Apply(st)
	req := config.Require{Subscription: true, Features: []string{"exports"}}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if d := g.Decide(ctx, "cus_bench", req, false); !d.Allowed() {
			b.Fatal(d.Denial)
		}
	}
}

// BenchmarkDecideMemo is BenchmarkDecideCached with the customer's entry
// kept in a memo between decisions (DecideMemo), as the sidecar's requests
// make them: no cache lookup.
func BenchmarkDecideMemo(b *testing.B) {
	g := New(Options{Store: nil, Plans: testPlans, Gating: gating(), Logger: quiet})
	now := time.Now()
	g.now = func() time.Time { return now }
	g.confirmed.Store(now.UnixNano())
	g.Apply(&State{Customer: "cus_bench", Subscriptions: []Subscription{{ID: "s", Status: "active",
		Prices: []string{"price_pro"}, CurrentPeriodEnd: now.Add(time.Hour)}}})
	req := config.Require{Subscription: true, Features: []string{"exports"}}
	ctx := context.Background()
	var memo Memo
	b.ReportAllocs()
	for b.Loop() {
		if d := g.DecideMemo(ctx, "cus_bench", req, false, &memo, time.Time{}); !d.Allowed() {
			b.Fatal(d.Denial)
		}
	}
}
