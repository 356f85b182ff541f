package entitlements

import (
	"fmt"
	"strings"
	"testing"
	"time"

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

// What few customers have (a failed invoice, grants) is held apart, so a
// customer without it carries one nil pointer; grants with raised limits
// get a resolution of their own and never change another customer's.
func TestViewExtrasOnlyWhereNeeded(t *testing.T) {
	plans := NewPlans(grantPlans)
	plain := newView(&State{Subscriptions: []Subscription{sub("active", "price_pro")}}, plans)
	failed := newView(&State{Subscriptions: []Subscription{sub("past_due", "price_pro")},
		FailedInvoice: &FailedInvoice{ID: "in_1", HostedInvoiceURL: "https://invoice.stripe.com/i/x"}}, plans)
	granted := newGrantedView(&State{Subscriptions: []Subscription{sub("active", "price_pro")}},
		[]Grant{{ID: "gr_a", Limits: map[string]int64{"calls": 1 << 40}}}, plans, t0.AddDate(0, 0, -1))
	if plain.extra != nil {
		t.Errorf("a customer without failed invoice or grants holds extras %+v; want nil", plain.extra)
	}
	if failed.paymentURL() != "https://invoice.stripe.com/i/x" || len(failed.grants()) != 0 {
		t.Errorf("failed invoice view: payment %q grants %v", failed.paymentURL(), failed.grants())
	}
	if granted.subs[0].shape == plain.subs[0].shape {
		t.Fatalf("a grant that raises limits shares the plain customer's resolution")
	}
	if n := granted.subs[0].shape.limits["calls"]; n != 1<<40 {
		t.Errorf("granted calls limit %d; want %d", n, int64(1<<40))
	}
	// Another customer on the same plan, loaded after the grant, keeps the
	// plan's limit.
	other := newView(&State{Subscriptions: []Subscription{sub("active", "price_pro")}}, plans)
	if n := other.subs[0].shape.limits["calls"]; n != 1000 {
		t.Errorf("the grant changed another customer's calls limit to %d; want the plan's 1000", n)
	}
}

// Times past what int64 nanoseconds hold stay in the future: a pause
// resuming in the year 3000 still pauses, a period ending then still
// entitles, and a resumes_at before 1678 pauses nothing.
func TestPackedTimesSaturate(t *testing.T) {
	y3000 := time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	y1600 := time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC)
	canceling := sub("active", "price_pro")
	canceling.CancelAtPeriodEnd, canceling.CurrentPeriodEnd = true, y3000
	pausedLong, pausedPast := sub("active", "price_pro"), sub("active", "price_pro")
	pausedLong.PauseCollection = &PauseCollection{Behavior: "void", ResumesAt: y3000}
	pausedPast.PauseCollection = &PauseCollection{Behavior: "void", ResumesAt: y1600}
	for _, c := range []struct {
		name string
		s    Subscription
		want bool
	}{
		{"period ends in 3000", canceling, true},
		{"paused until 3000", pausedLong, false},
		{"paused until 1600", pausedPast, true},
	} {
		v := newView(&State{Subscriptions: []Subscription{c.s}}, NewPlans(testPlans))
		if got := v.subs[0].entitled(t0.AddDate(0, 0, -1), 0); got != c.want {
			t.Errorf("%s: entitled = %v; want %v", c.name, got, c.want)
		}
	}
}
