package entitlements

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/config"
)

var grantPlans = map[string]*config.Plan{
	"free": {Prices: []string{"price_free"}, Features: []string{"reports"}, Limits: map[string]int64{"calls": 100, "bytes": 10}},
	"pro":  {Prices: []string{"price_pro"}, Features: []string{"reports", "exports"}, Limits: map[string]int64{"calls": 1000}},
	"team": {Prices: []string{"price_team"}, Features: []string{"sso"}},
}

func limitString(d Decision, meters ...string) string {
	var parts []string
	for _, m := range meters {
		if n, ok := d.Limit(m); ok {
			parts = append(parts, m+"="+strconv.FormatInt(n, 10))
		} else {
			parts = append(parts, m+"=unlimited")
		}
	}
	return strings.Join(parts, " ")
}

// Grants add to what Stripe entitles and never take anything away: features
// are a union, limits only go up (an unlimited meter stays unlimited), and a
// granted plan entitles as if subscribed, whatever Stripe says.
func TestGrantRules(t *testing.T) {
	now := t0.Add(-time.Hour)
	month0, month1 := calendarMonth(now)
	active := func(price string) []Subscription { return []Subscription{sub("active", price)} }
	for _, c := range []struct {
		name       string
		state      State
		grants     []Grant
		req        config.Require
		wantCode   string // "" = allowed
		wantPlan   string
		wantStatus string
		wantFeat   string
		wantLimits string // calls and bytes
	}{
		{"features, no subscription: feature route", State{}, []Grant{{Features: []string{"exports"}}},
			config.Require{Features: []string{"exports"}}, "", "", "", "exports", "calls=unlimited bytes=unlimited"},
		{"features, no subscription: subscription route", State{}, []Grant{{Features: []string{"exports"}}},
			reqSub, "subscription_required", "", "", "exports", "calls=unlimited bytes=unlimited"},
		{"plan, no subscription", State{}, []Grant{{Plan: "pro"}},
			reqSub, "", "pro", "active", "exports,reports", "calls=1000 bytes=unlimited"},
		{"plan satisfies plan_required", State{Subscriptions: active("price_free")}, []Grant{{Plan: "pro"}},
			config.Require{Plans: []string{"pro"}}, "", "free,pro", "active", "exports,reports", "calls=1000 bytes=unlimited"},
		{"plan over a canceled subscription", State{Subscriptions: []Subscription{sub("canceled", "price_pro")}}, []Grant{{Plan: "free"}},
			reqSub, "", "free", "active", "reports", "calls=100 bytes=10"},
		{"plan for a deleted customer", State{Deleted: true}, []Grant{{Plan: "team"}},
			config.Require{Features: []string{"sso"}}, "", "team", "active", "sso", "calls=unlimited bytes=unlimited"},
		{"limits raise Stripe's", State{Subscriptions: active("price_free")}, []Grant{{Limits: map[string]int64{"calls": 500}}},
			reqSub, "", "free", "active", "reports", "calls=500 bytes=10"},
		{"limits never lower Stripe's", State{Subscriptions: active("price_pro")}, []Grant{{Limits: map[string]int64{"calls": 50}}},
			reqSub, "", "pro", "active", "exports,reports", "calls=1000 bytes=unlimited"},
		{"limits never limit an unlimited meter", State{Subscriptions: active("price_pro")}, []Grant{{Limits: map[string]int64{"bytes": 5}}},
			reqSub, "", "pro", "active", "exports,reports", "calls=1000 bytes=unlimited"},
		{"the largest of several grants", State{Subscriptions: active("price_free")},
			[]Grant{{Limits: map[string]int64{"calls": 300}}, {Limits: map[string]int64{"calls": 700, "bytes": 2}}},
			reqSub, "", "free", "active", "reports", "calls=700 bytes=10"},
		{"a lower granted plan never lowers Stripe's", State{Subscriptions: active("price_pro")}, []Grant{{Plan: "free"}},
			reqSub, "", "free,pro", "active", "exports,reports", "calls=1000 bytes=unlimited"},
		{"an unlimited granted plan lifts the limit", State{Subscriptions: active("price_free")}, []Grant{{Plan: "team"}},
			reqSub, "", "free,team", "active", "reports,sso", "calls=unlimited bytes=unlimited"},
		{"Stripe's status stays", State{Subscriptions: []Subscription{sub("trialing", "price_free")}}, []Grant{{Plan: "pro", Limits: map[string]int64{"calls": 5000}}},
			reqSub, "", "free,pro", "trialing", "exports,reports", "calls=5000 bytes=unlimited"},
		{"features join Stripe's", State{Features: []string{"beta"}, Subscriptions: active("price_free")}, []Grant{{Features: []string{"exports"}}},
			config.Require{Features: []string{"exports", "beta", "reports"}}, "", "free", "active", "beta,exports,reports", "calls=100 bytes=10"},
		{"a removed plan entitles nothing", State{}, []Grant{{Plan: "gold"}},
			reqSub, "subscription_required", "", "", "", "calls=unlimited bytes=unlimited"},
		{"an expired grant adds nothing", State{Subscriptions: active("price_free")}, []Grant{{Features: []string{"exports"}, Until: now}},
			config.Require{Features: []string{"exports"}}, "feature_required", "free", "active", "reports", "calls=100 bytes=10"},
		// A grant written into Redis by anything but tollgate grant must not
		// smuggle a header or a second feature into X-Tollgate-Features.
		{"invalid feature names are dropped", State{}, []Grant{{Features: []string{"ok", "a,b", "x\r\nX-Tollgate-User: admin", ""}}},
			config.Require{Features: []string{"ok"}}, "", "", "", "ok", "calls=unlimited bytes=unlimited"},
		{"a grant until later applies", State{Subscriptions: active("price_free")}, []Grant{{Features: []string{"exports"}, Until: now.Add(time.Second)}},
			config.Require{Features: []string{"exports"}}, "", "free", "active", "exports,reports", "calls=100 bytes=10"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for i := range c.grants {
				c.grants[i].ID = "gr_" + string(rune('a'+i))
			}
			d := Rules{}.decide(preparedGrants(&c.state, c.grants, NewPlans(grantPlans), now), c.req, now)
			code := ""
			if d.Denial != nil {
				code = d.Denial.Code
			}
			if code != c.wantCode || d.Plan != c.wantPlan || d.Status != c.wantStatus || d.Features != c.wantFeat {
				t.Errorf("decide = code %q plan %q status %q features %q; want %q %q %q %q",
					code, d.Plan, d.Status, d.Features, c.wantCode, c.wantPlan, c.wantStatus, c.wantFeat)
			}
			if got := limitString(d, "calls", "bytes"); code == "" && got != c.wantLimits {
				t.Errorf("limits %s; want %s", got, c.wantLimits)
			}
		})
	}

	// Entitled by a granted plan alone, quotas run by calendar month.
	d := Rules{}.decide(preparedGrants(&State{}, []Grant{{ID: "gr_a", Plan: "pro"}}, NewPlans(grantPlans), now), reqSub, now)
	if !d.PeriodStart.Equal(month0) || !d.PeriodEnd.Equal(month1) || month1.Sub(month0) < 28*24*time.Hour {
		t.Errorf("granted plan period %v..%v; want the calendar month %v..%v", d.PeriodStart, d.PeriodEnd, month0, month1)
	}
	// With a Stripe period, that one counts.
	d = Rules{}.decide(preparedGrants(&State{Subscriptions: active("price_free")}, []Grant{{ID: "gr_a", Plan: "pro"}}, NewPlans(grantPlans), now), reqSub, now)
	if !d.PeriodEnd.Equal(t0) {
		t.Errorf("Stripe and granted plan: period end %v; want Stripe's %v", d.PeriodEnd, t0)
	}
}

// Every grant stops applying at its expiry, at decision time, with no
// reload: the prepared state holds a view per expiry to come.
func TestGrantExpiryAtDecisionTime(t *testing.T) {
	built := t0
	grants := []Grant{
		{ID: "gr_c", Features: []string{"c"}},
		{ID: "gr_b", Features: []string{"b"}, Until: built.Add(2 * time.Hour)},
		{ID: "gr_a", Features: []string{"a"}, Until: built.Add(time.Hour)},
		{ID: "gr_a2", Features: []string{"a2"}, Until: built.Add(time.Hour)},
		{ID: "gr_gone", Features: []string{"gone"}, Until: built},
	}
	v := preparedGrants(&State{}, grants, NewPlans(grantPlans), built)
	for _, c := range []struct {
		at         time.Duration
		wantFeat   string
		wantGrants string
	}{
		{0, "a,a2,b,c", "gr_a,gr_a2,gr_b,gr_c"},
		{time.Hour - time.Nanosecond, "a,a2,b,c", "gr_a,gr_a2,gr_b,gr_c"},
		{time.Hour, "b,c", "gr_b,gr_c"},
		{2 * time.Hour, "c", "gr_c"},
		{1000 * time.Hour, "c", "gr_c"},
	} {
		d := Rules{}.decide(v, config.Require{}, built.Add(c.at))
		var ids []string
		for _, g := range d.Grants {
			ids = append(ids, g.ID)
		}
		slices.Sort(ids)
		if d.Features != c.wantFeat || strings.Join(ids, ",") != c.wantGrants {
			t.Errorf("at +%v: features %q grants %v; want %q %s", c.at, d.Features, ids, c.wantFeat, c.wantGrants)
		}
	}
}

// The store keeps grants per customer, finds one by id to revoke it, lists
// them, and audits every change with who and why.
func TestGrantStore(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) { testGrantStore(t, open(t)) })
	}
}

func testGrantStore(t *testing.T, s *RedisStore) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	a := Grant{ID: NewGrantID(), Customer: "cus_a", Features: []string{"x"}, Reason: "pilot", By: "ops1", Created: now}
	b := Grant{ID: NewGrantID(), Customer: "cus_b", Plan: "pro", Until: now.Add(time.Hour), Reason: "deal", By: "ops2", Created: now.Add(time.Second)}
	w := s.Watch(ctx)
	defer w.Close()
	if ev, err := w.Next(ctx, 5*time.Second); err != nil || !ev.Subscribed {
		t.Fatalf("watch: %+v %v", ev, err)
	}
	for _, g := range []Grant{a, b} {
		if err := s.AddGrant(ctx, g); err != nil {
			t.Fatal(err)
		}
		if ev, err := w.Next(ctx, 5*time.Second); err != nil || ev.Customer != g.Customer {
			t.Fatalf("after AddGrant the feed said %+v %v; want customer %s announced", ev, err, g.Customer)
		}
	}
	all, err := s.ListGrants(ctx, "")
	if err != nil || len(all) != 2 || all[0].ID != a.ID || all[1].ID != b.ID || !all[1].Until.Equal(b.Until) {
		t.Fatalf("ListGrants() = %+v, %v; want a then b", all, err)
	}
	if one, err := s.ListGrants(ctx, "cus_b"); err != nil || len(one) != 1 || one[0].Plan != "pro" {
		t.Errorf("ListGrants(cus_b) = %+v, %v", one, err)
	}
	got, err := s.RevokeGrant(ctx, a.ID, "ops3", "pilot over", now.Add(time.Minute))
	if err != nil || got.Customer != "cus_a" || got.Reason != "pilot" {
		t.Fatalf("RevokeGrant = %+v, %v", got, err)
	}
	if ev, err := w.Next(ctx, 5*time.Second); err != nil || ev.Customer != "cus_a" {
		t.Errorf("after RevokeGrant the feed said %+v %v; want cus_a announced", ev, err)
	}
	if left, _ := s.Grants(ctx, "cus_a"); len(left) != 0 {
		t.Errorf("cus_a still has %+v after revoke", left)
	}
	if _, err := s.RevokeGrant(ctx, a.ID, "ops3", "", now); !errors.Is(err, ErrGrantNotFound) {
		t.Errorf("second revoke: %v; want ErrGrantNotFound", err)
	}
	if _, err := s.RevokeGrant(ctx, "nope", "ops3", "", now); !errors.Is(err, ErrInvalidGrantID) {
		t.Errorf("revoke of a malformed id: %v; want ErrInvalidGrantID", err)
	}
	audit, err := s.GrantAudit(ctx, "", 0)
	if err != nil || len(audit) != 3 {
		t.Fatalf("GrantAudit = %+v, %v; want 3 entries", audit, err)
	}
	if e := audit[0]; e.Type != GrantRevoked || e.Grant.ID != a.ID || e.By != "ops3" || e.Reason != "pilot over" || e.Host == "" {
		t.Errorf("newest audit entry %+v; want the revoke by ops3 with its reason", e)
	}
	if e := audit[2]; e.Type != GrantCreated || e.By != "ops1" || e.Reason != "pilot" || !e.At.Equal(now) {
		t.Errorf("oldest audit entry %+v; want a's creation by ops1", e)
	}
	if mine, _ := s.GrantAudit(ctx, "cus_b", 0); len(mine) != 1 || mine[0].Grant.ID != b.ID {
		t.Errorf("GrantAudit(cus_b) = %+v", mine)
	}
}

// A customer holds at most MaxActiveGrants active grants; expired ones do
// not count and old ones are dropped from the list.
func TestGrantStoreBounds(t *testing.T) {
	s := openStore(t, config.Redis{Prefix: "tg:"})
	ctx := context.Background()
	now := time.Now()
	old := Grant{ID: NewGrantID(), Customer: "cus_n", Features: []string{"old"}, Until: now.Add(-31 * 24 * time.Hour), Created: now.Add(-40 * 24 * time.Hour)}
	if err := s.AddGrant(ctx, old); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < MaxActiveGrants; i++ {
		if err := s.AddGrant(ctx, Grant{ID: NewGrantID(), Customer: "cus_n", Features: []string{"f"}, Created: now}); err != nil {
			t.Fatalf("grant %d: %v", i, err)
		}
	}
	if err := s.AddGrant(ctx, Grant{ID: NewGrantID(), Customer: "cus_n", Created: now}); !errors.Is(err, ErrTooManyGrants) {
		t.Errorf("grant %d: %v; want ErrTooManyGrants", MaxActiveGrants+1, err)
	}
	gs, _ := s.Grants(ctx, "cus_n")
	if len(gs) != MaxActiveGrants || slices.ContainsFunc(gs, func(g Grant) bool { return g.ID == old.ID }) {
		t.Errorf("%d grants stored (old one kept: %v); want %d, the one expired 31 days ago dropped", len(gs),
			slices.ContainsFunc(gs, func(g Grant) bool { return g.ID == old.ID }), MaxActiveGrants)
	}
}
