package entitlements

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// A memo (DecideMemo) holds the customer's cache entry between decisions
// only while the cache holds it: a change applied on this replica, a
// change announced by another, Forget and eviction all end it, and the
// next decision is the one Decide would make (issue 13).
func TestDecideMemoFollowsTheCache(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	cfg := config.Redis{URL: rd.URL(), Prefix: "tg:"}
	s, other := openStore(t, cfg), openStore(t, cfg)
	put(t, s, &State{Customer: "cus_m", Subscriptions: []Subscription{sub("active", "price_pro")}})
	clk := &clock{}
	clk.advance(-time.Until(t0.Add(-time.Hour))) // decisions happen inside the period
	gcfg := gating()
	gcfg.CacheSize = 1 // a second customer evicts one of the two
	m := metrics.New()
	g := New(Options{Store: s, Plans: testPlans, Gating: gcfg, Metrics: m, Logger: quiet, Now: clk.now})
	runGate(t, g)
	ctx, pro := context.Background(), config.Require{Plans: []string{"pro"}}
	var memo Memo
	decide := func() Decision { return g.DecideMemo(ctx, "cus_m", pro, false, &memo, time.Time{}) }
	misses := func() float64 { return testutil.ToFloat64(m.EntitlementCache.WithLabelValues("miss")) }
	memoGone := func() bool { return memo.e.Load().gone.Load() }

	if d := decide(); !d.Allowed() {
		t.Fatalf("first decision: %+v", d.Denial)
	}
	if d := decide(); !d.Allowed() || memo.e.Load() == nil || memoGone() {
		t.Fatalf("second decision %+v; memo %p: want allowed, from a memo of the cached entry", d.Denial, memo.e.Load())
	}

	// Applied here: the subscription is canceled.
	g.Apply(&State{Customer: "cus_m", Subscriptions: []Subscription{sub("canceled", "price_pro")}})
	if d := decide(); d.Allowed() {
		t.Fatal("allowed after the cancellation was applied: the memo outlived its entry")
	}

	// Announced by another replica: active again.
	put(t, other, &State{Customer: "cus_m", Subscriptions: []Subscription{sub("active", "price_pro")}})
	testrig.Eventually(t, "the announced change to reach decisions made with the memo", func() bool { return decide().Allowed() })

	// Forgotten: the next decision loads the customer again.
	before := misses()
	g.Forget("cus_m")
	if d := decide(); !d.Allowed() || misses() != before+1 {
		t.Fatalf("after Forget: allowed %v, misses %v→%v; want a load", d.Allowed(), before, misses())
	}
	decide() // the memo takes the loaded entry

	// Evicted: with room for one customer, a second one evicts one of the
	// two; the memo's entry is gone exactly when the cache no longer holds
	// it.
	g.Decide(ctx, "cus_other", pro, false)
	if cached := g.cache.get("cus_m") != nil; memoGone() == cached {
		t.Fatalf("after an eviction: cus_m cached %v, memo's entry gone %v", cached, memoGone())
	}
	evicted, before := memoGone(), misses()
	if d := decide(); !d.Allowed() {
		t.Fatalf("after an eviction: %+v", d.Denial)
	}
	if loaded := misses() == before+1; loaded != evicted {
		t.Fatalf("after an eviction: cus_m evicted %v, loaded again %v; want the same", evicted, loaded)
	}
}

// Every way an entry leaves the cache marks it gone: replaced, removed,
// evicted.
func TestCacheMarksWhatLeavesGone(t *testing.T) {
	c := newCache(2)
	a, b, a2, x := &entry{}, &entry{}, &entry{}, &entry{}
	c.put("a", a)
	c.put("b", b)
	if a.gone.Load() || b.gone.Load() {
		t.Fatal("an entry still cached is gone")
	}
	c.put("a", a2)
	if !a.gone.Load() || a2.gone.Load() {
		t.Fatalf("replaced: old gone %v, new gone %v; want true, false", a.gone.Load(), a2.gone.Load())
	}
	c.put("x", x) // over the limit: one of the three is evicted
	gone := 0
	for k, e := range map[string]*entry{"a": a2, "b": b, "x": x} {
		if e.gone.Load() {
			gone++
			if c.get(k) != nil {
				t.Errorf("%s is gone and still cached", k)
			}
		} else if c.get(k) != e {
			t.Errorf("%s is not gone and not cached", k)
		}
	}
	if gone != 1 {
		t.Fatalf("after one eviction %d entries are gone; want 1", gone)
	}
	for _, k := range []string{"a", "b", "x"} {
		if e := c.get(k); e != nil {
			c.remove(k)
			if !e.gone.Load() {
				t.Errorf("removed %s is not gone", k)
			}
		}
	}
}

// A decision made at a time the caller passes (the sidecar passes the
// identity's reading of the clock, auth.Identity.At) is made at that time,
// not at the gate's clock: at a time past max_staleness the entry is too
// old, the customer is read again and the decision is counted stale; at
// the clock's own time, or at the zero time, which reads the clock, the
// entry is fresh and the decision a hit (issue 13).
func TestDecideMemoAtTheCallersTime(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	s := openStore(t, config.Redis{URL: rd.URL(), Prefix: "tg:"})
	put(t, s, &State{Customer: "cus_m", Subscriptions: []Subscription{sub("active", "price_pro")}})
	clk := &clock{}
	clk.advance(-time.Until(t0.Add(-time.Hour))) // decisions happen inside the period
	m := metrics.New()
	gcfg := gating()
	g := New(Options{Store: s, Plans: testPlans, Gating: gcfg, Metrics: m, Logger: quiet, Now: clk.now})
	runGate(t, g)
	ctx, pro := context.Background(), config.Require{Plans: []string{"pro"}}
	var memo Memo
	if d := g.DecideMemo(ctx, "cus_m", pro, false, &memo, time.Time{}); !d.Allowed() {
		t.Fatalf("first decision: %+v", d.Denial)
	}
	results := []string{"hit", "miss", "stale", "negative", "unavailable"}
	counts := func() map[string]float64 {
		out := map[string]float64{}
		for _, r := range results {
			out[r] = testutil.ToFloat64(m.EntitlementCache.WithLabelValues(r))
		}
		return out
	}
	for _, c := range []struct {
		name   string
		at     func() time.Time
		result string
		old    bool // aged past max_staleness
	}{
		{"the zero time", func() time.Time { return time.Time{} }, "hit", false},
		{"the clock's time", clk.now, "hit", false},
		{"past max_staleness", func() time.Time { return clk.now().Add(2 * gcfg.MaxStaleness) }, "stale", true},
		{"the clock's time again", clk.now, "hit", false},
	} {
		before := counts()
		d := g.DecideMemo(ctx, "cus_m", pro, false, &memo, c.at())
		if !d.Allowed() {
			t.Fatalf("%s: %+v", c.name, d.Denial)
		}
		after := counts()
		for _, r := range results {
			want := 0.0
			if r == c.result {
				want = 1
			}
			if got := after[r] - before[r]; got != want {
				t.Errorf("%s: %q decisions +%v; want +%v", c.name, r, got, want)
			}
		}
		if old := d.Age > gcfg.MaxStaleness; old != c.old {
			t.Errorf("%s: age %v; want past max_staleness (%v): %v", c.name, d.Age, gcfg.MaxStaleness, c.old)
		}
	}
}
