package sidecar

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// An identity's memo record is made once, however many requests race to
// make it, with both its parts (issue 13).
func TestMemoOfIsMadeOnceForTheCustomer(t *testing.T) {
	if memoOf("cus_1", nil) != nil {
		t.Fatal("an identity without a memo has a memo record")
	}
	var am auth.Memo
	const racers = 8
	got := make([]*customerMemo, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() { got[i] = memoOf("cus_1", &am) })
	}
	wg.Wait()
	for i, c := range got {
		if c == nil || c != got[0] {
			t.Fatalf("racer %d got memo record %p; want the one record %p", i, c, got[0])
		}
	}
	if got[0].gate() == nil || got[0].meter() == nil || (*customerMemo)(nil).meter() != nil || (*customerMemo)(nil).gate() != nil {
		t.Fatal("a record's parts are nil, or a nil record's are not")
	}
}

// The gate decides at the identity's reading of the clock
// (auth.Identity.At), not at a second reading of its own (issue 13): a
// decision at a time past max_staleness finds the customer's state too
// old, one at the time of the check does not, and an identity without a
// time (not made by Authenticate) is decided at the gate's clock.
func TestGateDecidesAtTheIdentitysTime(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	cfg := testConfig(t, "http://127.0.0.1:1")
	cfg.Redis.URL = rd.URL()
	cfg.Plans = map[string]*config.Plan{"pro": {Prices: []string{"price_pro"}, Features: []string{"reports"}}}
	route := &config.Route{Path: "/reports/**", Require: config.Require{Features: []string{"reports"}}}
	cfg.Routes = []*config.Route{route}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := start(t, cfg)
	testrig.Eventually(t, "gate live", r.sc.Gate.Live)
	ctx, now := context.Background(), time.Now()
	err := r.sc.Customers.Update(ctx, "cus_at", func(*entitlements.State) (*entitlements.State, error) {
		return &entitlements.State{Customer: "cus_at", Subscriptions: []entitlements.Subscription{{ID: "sub_at",
			Status: "active", Prices: []string{"price_pro"}, CurrentPeriodStart: now.Add(-time.Hour),
			CurrentPeriodEnd: now.Add(30 * 24 * time.Hour)}}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	gate := gateAdapter{g: r.sc.Gate, limited: limitedMeters(cfg.Plans)}
	stale := func() float64 { return testutil.ToFloat64(r.sc.Metrics.EntitlementCache.WithLabelValues("stale")) }
	for _, c := range []struct {
		name  string
		at    time.Time
		stale float64
	}{
		{"no time (loads the customer)", time.Time{}, 0},
		{"the time of the check", time.Now(), 0},
		{"past max_staleness", time.Now().Add(2 * cfg.Gating.MaxStaleness), 1},
		{"no time", time.Time{}, 0},
	} {
		before := stale()
		_, herr := gate.Decide(ctx, route, auth.Identity{User: "user_at", Customer: "cus_at", At: c.at, Memo: new(auth.Memo)})
		if herr != nil {
			t.Fatalf("%s: %v", c.name, herr)
		}
		if got := stale() - before; got != c.stale {
			t.Errorf("%s: %v stale decisions; want %v", c.name, got, c.stale)
		}
	}
}
