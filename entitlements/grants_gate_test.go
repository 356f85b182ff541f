package entitlements

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// Two gates (two replicas) on one real redis-server, with the periodic
// refresh off so only the change feed can carry a change: a grant, its
// revoke, and a grant for a customer with no stored state reach both; an
// expiry is enforced at decision time with no reload at all; a state this
// replica writes (Apply) keeps the grants.
func TestGrantsOnEveryGate(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	cfg := config.Redis{URL: rd.URL(), Prefix: "tg:"}
	clk := &clock{}
	newG := func() (*Gate, *RedisStore) {
		s := openStore(t, cfg)
		gc := gating()
		gc.RefreshInterval = 0
		gc.MaxStaleness = 100 * time.Hour // the test clock jumps an hour
		g := New(Options{Store: s, Grants: s, Plans: grantPlans, Gating: gc, Logger: quiet, Now: clk.now})
		runGate(t, g)
		return g, s
	}
	g1, s1 := newG()
	g2, _ := newG()
	ctx := context.Background()
	free := &State{Customer: "cus_g", Subscriptions: []Subscription{{ID: "sub_1", Status: "active", Prices: []string{"price_free"},
		CurrentPeriodStart: clk.now().Add(-time.Hour), CurrentPeriodEnd: clk.now().Add(30 * 24 * time.Hour)}}}
	put(t, s1, free)
	exports := config.Require{Features: []string{"exports"}}
	gates := []*Gate{g1, g2}
	for i, g := range gates {
		if d := g.Decide(ctx, "cus_g", exports, false); d.Denial == nil || d.Denial.Code != "feature_required" {
			t.Fatalf("gate %d before any grant: %+v; want feature_required", i, d.Denial)
		}
	}
	eventuallyBoth := func(what string, ok func(Decision) bool, req config.Require, customer string) {
		t.Helper()
		for _, g := range gates {
			testrig.Eventually(t, what, func() bool { return ok(g.Decide(ctx, customer, req, false)) })
		}
	}
	allowed := func(d Decision) bool { return d.Denial == nil }
	denied := func(d Decision) bool { return d.Denial != nil }

	grant := Grant{ID: NewGrantID(), Customer: "cus_g", Features: []string{"exports"}, Limits: map[string]int64{"calls": 5000},
		Until: clk.now().Add(time.Hour), Reason: "pilot", By: "ops", Created: clk.now()}
	if err := s1.AddGrant(ctx, grant); err != nil {
		t.Fatal(err)
	}
	eventuallyBoth("the grant to apply", allowed, exports, "cus_g")
	for i, g := range gates {
		d := g.Decide(ctx, "cus_g", exports, false)
		if n, ok := d.Limit("calls"); !ok || n != 5000 || len(d.Grants) != 1 || d.Grants[0].ID != grant.ID {
			t.Errorf("gate %d: calls limit %d (%v), grants %+v; want 5000 and the grant", i, n, ok, d.Grants)
		}
		if n, _ := d.Limit("bytes"); n != 10 {
			t.Errorf("gate %d: bytes limit %d; want Stripe's 10 (a grant never lowers a limit)", i, n)
		}
	}

	// A state this replica writes (billing's Apply) keeps the grants.
	g1.Apply(free)
	if d := g1.Decide(ctx, "cus_g", exports, false); d.Denial != nil {
		t.Errorf("after Apply: %+v; want the grant kept", d.Denial)
	}

	// At the expiry every replica stops applying it: no reload, no timer.
	clk.advance(time.Hour)
	for i, g := range gates {
		if d := g.Decide(ctx, "cus_g", exports, false); d.Denial == nil || d.Denial.Code != "feature_required" {
			t.Errorf("gate %d at the grant's expiry: %+v; want feature_required at once", i, d.Denial)
		}
		if n, _ := g.Decide(ctx, "cus_g", reqSub, false).Limit("calls"); n != 100 {
			t.Errorf("gate %d at the grant's expiry: calls limit %d; want Stripe's 100", i, n)
		}
	}

	// A revoke reaches every replica.
	forever := Grant{ID: NewGrantID(), Customer: "cus_g", Features: []string{"exports"}, Reason: "deal", By: "ops", Created: clk.now()}
	if err := s1.AddGrant(ctx, forever); err != nil {
		t.Fatal(err)
	}
	eventuallyBoth("the second grant to apply", allowed, exports, "cus_g")
	if _, err := s1.RevokeGrant(ctx, forever.ID, "ops", "deal off", clk.now()); err != nil {
		t.Fatal(err)
	}
	eventuallyBoth("the revoke to apply", denied, exports, "cus_g")

	// A customer with no stored state (no Stripe here): a granted plan
	// entitles it on both.
	for i, g := range gates {
		if d := g.Decide(ctx, "cus_comp", reqSub, false); d.Denial == nil || d.Denial.Code != "subscription_required" {
			t.Fatalf("gate %d, comp customer before the grant: %+v", i, d.Denial)
		}
	}
	if err := s1.AddGrant(ctx, Grant{ID: NewGrantID(), Customer: "cus_comp", Plan: "pro", Reason: "comp", By: "ops", Created: clk.now()}); err != nil {
		t.Fatal(err)
	}
	eventuallyBoth("the comp plan to apply", allowed, reqSub, "cus_comp")
	for i, g := range gates {
		if d := g.Decide(ctx, "cus_comp", reqSub, false); d.Plan != "pro" || d.Status != StatusActive {
			t.Errorf("gate %d, comp customer: plan %q status %q; want pro, active", i, d.Plan, d.Status)
		}
	}
}
