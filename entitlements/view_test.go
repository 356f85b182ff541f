package entitlements

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/config"
)

// Customers on the same plans with the same Stripe features share one
// resolution (names, headers, limits); a different combination gets its
// own; what a decision reads is the same either way.
func TestViewsShareWhatCustomersHaveInCommon(t *testing.T) {
	plans := NewPlans(testPlans)
	state := func(features []string, prices ...string) *State {
		return &State{Subscriptions: []Subscription{sub("active", prices...)}, Features: features}
	}
	a := newView(state([]string{"beta"}, "price_pro", "price_addon"), plans)
	b := newView(state([]string{"beta"}, "price_addon", "price_pro", "price_not_in_plans"), plans)
	c := newView(state(nil, "price_pro", "price_addon"), plans)
	if a.subs[0].shape != b.subs[0].shape || a.stripe != b.stripe {
		t.Errorf("two customers on pro+addon with feature beta hold separate resolutions; want one shared")
	}
	if a.subs[0].shape == c.subs[0].shape || c.stripe != noFeatures {
		t.Errorf("a customer without Stripe features shares the resolution of one with them")
	}
	for _, v := range []view{a, c} {
		d := Rules{}.decide(&v, config.Require{Features: []string{"sso"}}, t0.AddDate(0, 0, -1))
		if !d.Allowed() || d.Plan != "addon,pro" || d.Status != StatusActive {
			t.Errorf("decision = %+v; want allowed on addon,pro, active", d)
		}
	}
	if got, want := a.subs[0].shape.featHeader, "beta,exports,reports,sso"; got != want {
		t.Errorf("features header = %q; want %q", got, want)
	}
}

// An account with more distinct feature combinations than the intern
// table holds still gets correct views; the table stops growing.
func TestInternTablesAreBounded(t *testing.T) {
	plans := NewPlans(testPlans)
	for i := range maxInterned + 50 {
		f := fmt.Sprintf("feature_%d", i)
		v := newView(&State{Subscriptions: []Subscription{sub("active", "price_pro")}, Features: []string{f}}, plans)
		if !strings.Contains(v.subs[0].shape.featHeader, f) || v.stripe.header != f {
			t.Fatalf("customer %d: features %q / %q; want %s in both", i, v.subs[0].shape.featHeader, v.stripe.header, f)
		}
	}
	if n, m := len(plans.interned.shapes), len(plans.interned.sets); n > maxInterned || m > maxInterned {
		t.Errorf("intern tables hold %d shapes and %d sets; want at most %d each", n, m, maxInterned)
	}
}
