package sidecar

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// Quota bypass through shadow mode: units a shadowed route serves past the
// quota are billed, so the quota of an enforcing route on the same meter
// counts them too, on every replica. Were they left out of the quota's
// ledger, a grant raising the limit above what the ledger holds (but below
// what was billed) would let the enforcing route serve past the new limit.
func TestShadowOverQuotaCountsForEnforcedRoutes(t *testing.T) {
	no := false
	g := newGrantsRig(t, func(c *config.Config) {
		c.Gating.Mode = config.ModeShadow
		c.Routes = append([]*config.Route{{Path: "/api/strict/**", Require: config.Require{Subscription: true}, Meter: "calls", Shadow: &no}}, c.Routes...)
	})
	g.subscribe("cus_q", "price_free") // calls: 3
	tok := customerToken(t, strings.Repeat("k", 32), "cus_q")
	for i := range 6 {
		if code := g.call(g.a, "cus_q", "/api/calls/x"); code != http.StatusOK {
			t.Fatalf("shadowed request %d: %d; want 200", i+1, code)
		}
	}
	quota := func(r *running) (code int, limit, used int64) {
		code, body := getAs(t, r, "/api/strict/x", tok)
		var a struct{ Limit, Used int64 }
		_ = json.Unmarshal([]byte(body), &a)
		return code, a.Limit, a.Used
	}
	for _, r := range []*running{g.a, g.b} {
		testrig.Eventually(t, "the enforcing route to count the 6 units served", func() bool {
			code, _, used := quota(r)
			if code == http.StatusOK {
				t.Fatalf("the enforcing route served a request past the quota of 3")
			}
			return code == http.StatusTooManyRequests && used == 6
		})
	}

	// 6 units are billed: a limit raised to 5 still admits nothing.
	g.add(entitlements.Grant{Customer: "cus_q", Limits: map[string]int64{"calls": 5}})
	for _, r := range []*running{g.a, g.b} {
		testrig.Eventually(t, "the raised limit", func() bool {
			code, limit, used := quota(r)
			if code == http.StatusOK {
				t.Fatalf("the enforcing route served a request with 6 units billed against a limit of 5")
			}
			return code == http.StatusTooManyRequests && limit == 5 && used == 6
		})
	}
}
