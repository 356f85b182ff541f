package billing

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/entitlements"
)

// GET subscription shows the grants in force, with what they add and why,
// and what they add is part of features and entitled; who made a grant is
// for the operators' audit, not for the customer's page.
func TestSubscriptionShowsGrants(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.subscribe("cus_A", "sub_A", stripe.SubscriptionStatusActive, "price_starter_m")
	until := time.Now().Add(720 * time.Hour).UTC().Truncate(time.Second)
	pilot := entitlements.Grant{ID: entitlements.NewGrantID(), Customer: "cus_A", Features: []string{"exports"},
		Limits: map[string]int64{"api_calls": 500}, Until: until, Reason: "pilot", By: "alice", Created: time.Now()}
	expired := entitlements.Grant{ID: entitlements.NewGrantID(), Customer: "cus_A", Features: []string{"old"},
		Until: time.Now().Add(-time.Hour), Reason: "over", By: "alice", Created: time.Now().Add(-48 * time.Hour)}
	r.double.PutCustomer(&stripe.Customer{ID: "cus_C"})
	comp := entitlements.Grant{ID: entitlements.NewGrantID(), Customer: "cus_C", Plan: "team", Reason: "comp account", By: "bob", Created: time.Now()}
	for _, g := range []entitlements.Grant{pilot, expired, comp} {
		if err := r.store.AddGrant(ctx, g); err != nil {
			t.Fatal(err)
		}
	}

	a := r.call("GET", "/subscription", "u1", "cus_A", "")
	grants, _ := a.body["grants"].([]any)
	if a.status != http.StatusOK || len(grants) != 1 {
		t.Fatalf("subscription = %d %s; want the one grant in force", a.status, a.raw)
	}
	g := grants[0].(map[string]any)
	limits, _ := g["limits"].(map[string]any)
	feats, _ := g["features"].([]any)
	if g["id"] != pilot.ID || g["reason"] != "pilot" || g["until"] != until.Format(time.RFC3339) || len(feats) != 1 ||
		feats[0] != "exports" || limits["api_calls"] != float64(500) || g["plan"] != nil || g["by"] != nil {
		t.Errorf("grant = %v; want id, features [exports], limits {api_calls: 500}, until, reason pilot, no plan, no by", g)
	}
	if a.str("plan") != "starter" || a.str("status") != "active" || a.body["entitled"] != true {
		t.Errorf("plan %q status %q entitled %v; want Stripe's starter, active, entitled", a.str("plan"), a.str("status"), a.body["entitled"])
	}
	if f, _ := a.body["features"].([]any); len(f) != 1 || f[0] != "exports" {
		t.Errorf("features = %v; want [exports] (granted)", a.body["features"])
	}

	// Entitled by a granted plan alone: its plan and status active.
	c := r.call("GET", "/subscription", "u3", "cus_C", "")
	cg, _ := c.body["grants"].([]any)
	if c.status != http.StatusOK || c.body["entitled"] != true || c.str("plan") != "team" || c.str("status") != "active" ||
		c.str("subscription") != "" || len(cg) != 1 || cg[0].(map[string]any)["until"] != nil || cg[0].(map[string]any)["plan"] != "team" {
		t.Errorf("comp customer = %d %s; want entitled, plan team, status active, no subscription, the grant until null", c.status, c.raw)
	}

	// Without grants the list is empty, never null.
	r.subscribe("cus_B", "sub_B", stripe.SubscriptionStatusActive, "price_pro_m")
	b := r.call("GET", "/subscription", "u2", "cus_B", "")
	if gs, ok := b.body["grants"].([]any); !ok || len(gs) != 0 {
		t.Errorf("grants of a customer without any = %v; want []", b.body["grants"])
	}
}
