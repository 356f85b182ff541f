package entitlements

import (
	"context"
	"fmt"
	"runtime"
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

// BenchmarkCacheMemory reports the heap held per 100,000 cached customers
// (one subscription each) as bytes/100k.
func BenchmarkCacheMemory(b *testing.B) {
	for i := 0; i < b.N; i++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		g := New(Options{Plans: testPlans, Gating: gating(), Logger: quiet})
		end := time.Now().Add(time.Hour)
		for c := 0; c < 100_000; c++ {
			id := fmt.Sprintf("cus_%014d", c)
			g.Apply(&State{Customer: id, Subscriptions: []Subscription{{ID: "sub_" + id, Status: "active",
				Prices: []string{"price_pro"}, CurrentPeriodEnd: end}}})
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if g.Cached() != 100_000 {
			b.Fatalf("cached %d", g.Cached())
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc), "bytes/100k")
		runtime.KeepAlive(g)
	}
}
