package sidecar

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// grantsRig is two replicas on one real redis-server in front of an app that
// records the identity headers it was sent. The periodic refresh is off, so
// only the change feed can bring a grant to a replica.
type grantsRig struct {
	t      *testing.T
	a, b   *running
	grants *entitlements.RedisStore
	mu     sync.Mutex
	seen   []http.Header
}

func newGrantsRig(t *testing.T, mutate func(*config.Config)) *grantsRig {
	t.Helper()
	g := &grantsRig{t: t}
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.seen = append(g.seen, r.Header.Clone())
		g.mu.Unlock()
	}))
	t.Cleanup(app.Close)
	newCfg := func() *config.Config {
		cfg := testConfig(t, app.URL)
		cfg.Redis.URL = rd.URL()
		cfg.Gating.RefreshInterval = 0
		cfg.Metering.FlushInterval, cfg.Metering.Window = 50*time.Millisecond, time.Second
		cfg.Metering.Meters = map[string]*config.Meter{"calls": {EventName: "calls"}}
		cfg.Plans = map[string]*config.Plan{
			"free": {Prices: []string{"price_free"}, Features: []string{"reports"}, Limits: map[string]int64{"calls": 3}},
			"pro":  {Prices: []string{"price_pro"}, Features: []string{"reports", "exports"}, Limits: map[string]int64{"calls": 8}},
		}
		cfg.Routes = []*config.Route{
			{Path: "/api/exports/**", Require: config.Require{Features: []string{"exports"}}},
			{Path: "/api/calls/**", Require: config.Require{Subscription: true}, Meter: "calls"},
			{Path: "/api/**", Require: config.Require{Subscription: true}},
		}
		if mutate != nil {
			mutate(cfg)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	g.a, g.b = start(t, newCfg()), start(t, newCfg())
	waitReady(t, g.a, g.b)
	g.grants = entitlements.NewRedisStore(g.a.sc.Store)
	return g
}

// subscribe stores a Stripe state for customer: one active subscription to price.
func (g *grantsRig) subscribe(customer, price string) {
	g.t.Helper()
	err := g.a.sc.Customers.Update(context.Background(), customer, func(*entitlements.State) (*entitlements.State, error) {
		return &entitlements.State{Subscriptions: []entitlements.Subscription{{ID: "sub_" + customer, Status: "active",
			Prices: []string{price}, CurrentPeriodStart: time.Now().Add(-time.Hour), CurrentPeriodEnd: time.Now().Add(10 * 24 * time.Hour)}}}, nil
	})
	if err != nil {
		g.t.Fatal(err)
	}
}

func (g *grantsRig) call(r *running, customer, path string) int {
	g.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+r.sc.ProxyAddr()+path, nil)
	req.Header.Set("Authorization", "Bearer "+customerToken(g.t, strings.Repeat("k", 32), customer))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (g *grantsRig) lastSeen() http.Header {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.seen[len(g.seen)-1]
}

func (g *grantsRig) add(gr entitlements.Grant) entitlements.Grant {
	g.t.Helper()
	gr.ID, gr.Created, gr.By = entitlements.NewGrantID(), time.Now(), "ops"
	if gr.Reason == "" {
		gr.Reason = "test"
	}
	if err := g.grants.AddGrant(context.Background(), gr); err != nil {
		g.t.Fatal(err)
	}
	return gr
}

// untilBoth polls both replicas until each answers want, and returns how
// long after start the slower one did.
func (g *grantsRig) untilBoth(what, customer, path string, want int, start time.Time) time.Duration {
	g.t.Helper()
	var slowest time.Duration
	for _, r := range []*running{g.a, g.b} {
		testrig.Eventually(g.t, what, func() bool { return g.call(r, customer, path) == want })
		slowest = max(slowest, time.Since(start))
	}
	return slowest
}

// A grant made on one replica's store is enforced by both replicas within
// the SPEC's 1 s, through the change feed (the periodic refresh is off);
// so is its revoke. The app sees the granted plan and features.
func TestGrantReachesBothReplicasWithinASecond(t *testing.T) {
	g := newGrantsRig(t, nil)
	g.subscribe("cus_g", "price_free")
	for _, r := range []*running{g.a, g.b} {
		if code := g.call(r, "cus_g", "/api/exports/x"); code != http.StatusForbidden {
			t.Fatalf("before the grant: %d; want 403 feature_required", code)
		}
	}
	start := time.Now()
	gr := g.add(entitlements.Grant{Customer: "cus_g", Features: []string{"exports"}})
	took := g.untilBoth("the grant on both replicas", "cus_g", "/api/exports/x", 200, start)
	t.Logf("grant enforced on both replicas %v after it was stored", took)
	if took > time.Second {
		t.Errorf("the grant took %v to reach both replicas; the SPEC's bound is 1 s", took)
	}
	if h := g.lastSeen(); h.Get("X-Tollgate-Features") != "exports,reports" || h.Get("X-Tollgate-Plan") != "free" {
		t.Errorf("app saw plan %q features %q; want free, exports,reports", h.Get("X-Tollgate-Plan"), h.Get("X-Tollgate-Features"))
	}

	start = time.Now()
	if _, err := g.grants.RevokeGrant(context.Background(), gr.ID, "ops", "done", time.Now()); err != nil {
		t.Fatal(err)
	}
	took = g.untilBoth("the revoke on both replicas", "cus_g", "/api/exports/x", http.StatusForbidden, start)
	t.Logf("revoke enforced on both replicas %v after it was stored", took)
	if took > time.Second {
		t.Errorf("the revoke took %v to reach both replicas; the SPEC's bound is 1 s", took)
	}

	// A customer nobody subscribed: a granted plan entitles it, status active.
	if code := g.call(g.b, "cus_comp", "/api/x"); code != http.StatusPaymentRequired {
		t.Fatalf("comp customer before the grant: %d; want 402", code)
	}
	g.add(entitlements.Grant{Customer: "cus_comp", Plan: "pro"})
	g.untilBoth("the comp plan on both replicas", "cus_comp", "/api/x", 200, time.Now())
	if h := g.lastSeen(); h.Get("X-Tollgate-Plan") != "pro" || h.Get("X-Tollgate-Status") != "active" {
		t.Errorf("app saw plan %q status %q; want pro, active", h.Get("X-Tollgate-Plan"), h.Get("X-Tollgate-Status"))
	}
}

// served counts the 200s a replica gives before the first 429 (at most max).
func (g *grantsRig) served(r *running, customer string, max int) int {
	g.t.Helper()
	for n := 0; n < max; n++ {
		switch code := g.call(r, customer, "/api/calls/x"); code {
		case 200:
		case http.StatusTooManyRequests:
			return n
		default:
			g.t.Fatalf("request %d: %d", n+1, code)
		}
	}
	return max
}

// A grant raises a plan's limit and never lowers it; the quota is exact
// (see TestQuotaExceeded).
func TestGrantRaisesLimitsNeverLowers(t *testing.T) {
	g := newGrantsRig(t, nil)
	g.subscribe("cus_up", "price_free")  // calls: 3
	g.subscribe("cus_keep", "price_pro") // calls: 8
	g.add(entitlements.Grant{Customer: "cus_up", Limits: map[string]int64{"calls": 6}})
	g.add(entitlements.Grant{Customer: "cus_keep", Limits: map[string]int64{"calls": 2}})
	for _, c := range []struct {
		customer string
		want     int
	}{{"cus_up", 6}, {"cus_keep", 8}} {
		if n := g.served(g.a, c.customer, 20); n != c.want {
			t.Errorf("%s: %d requests served before 429; want %d", c.customer, n, c.want)
		}
	}
}

// An expiring grant stops applying at its expiry on both replicas, with
// nothing announced: decisions check the expiry themselves.
func TestGrantExpiresOnBothReplicas(t *testing.T) {
	g := newGrantsRig(t, nil)
	g.subscribe("cus_e", "price_free")
	until := time.Now().Add(5 * time.Second)
	g.add(entitlements.Grant{Customer: "cus_e", Features: []string{"exports"}, Until: until})
	g.untilBoth("the grant on both replicas", "cus_e", "/api/exports/x", 200, time.Now())
	for _, r := range []*running{g.a, g.b} {
		testrig.Eventually(t, "the grant to expire", func() bool { return g.call(r, "cus_e", "/api/exports/x") == http.StatusForbidden })
		if now := time.Now(); now.Before(until) {
			t.Errorf("denied at %v, before the grant's expiry %v", now, until)
		}
	}
}

// Shadow mode on a real gate: an unsubscribed caller, a missing feature
// and a used-up quota are forwarded with X-Tollgate-Shadow-Denial and
// metered as usual; a route with shadow: false still enforces; a caller
// without a token still gets 401.
func TestShadowModeEndToEnd(t *testing.T) {
	no := false
	g := newGrantsRig(t, func(c *config.Config) {
		c.Gating.Mode = config.ModeShadow
		c.Routes = append([]*config.Route{{Path: "/api/enforced/**", Require: config.Require{Features: []string{"exports"}}, Shadow: &no}}, c.Routes...)
	})
	g.subscribe("cus_s", "price_free") // calls: 3, no exports
	for _, c := range []struct {
		customer, path string
		wantStatus     int
		wantShadow     string
	}{
		{"cus_s", "/api/exports/x", 200, "feature_required"},
		{"cus_nobody", "/api/x", 200, "subscription_required"},
		{"cus_s", "/api/x", 200, ""},
		{"cus_s", "/api/enforced/x", http.StatusForbidden, ""},
	} {
		if code := g.call(g.a, c.customer, c.path); code != c.wantStatus {
			t.Errorf("%s %s: %d; want %d", c.customer, c.path, code, c.wantStatus)
			continue
		}
		if got := g.lastSeen().Get("X-Tollgate-Shadow-Denial"); c.wantStatus == 200 && got != c.wantShadow {
			t.Errorf("%s %s: app saw X-Tollgate-Shadow-Denial %q; want %q", c.customer, c.path, got, c.wantShadow)
		}
	}
	resp, err := http.Get("http://" + g.a.sc.ProxyAddr() + "/api/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token on a shadow route: %d; want 401", resp.StatusCode)
	}

	// The quota of 3: every request is served, those past the limit marked,
	// and every one is metered.
	shadowed := 0
	for i := 0; i < 6; i++ {
		if code := g.call(g.a, "cus_s", "/api/calls/x"); code != 200 {
			t.Fatalf("metered request %d in shadow mode: %d; want 200", i+1, code)
		}
		if g.lastSeen().Get("X-Tollgate-Shadow-Denial") == "quota_exceeded" {
			shadowed++
		}
	}
	if shadowed != 3 {
		t.Errorf("%d of 6 requests marked quota_exceeded; want 3", shadowed)
	}
	testrig.Eventually(t, "6 units metered", func() bool {
		n, err := g.a.sc.meter.Used(context.Background(), "cus_s", "calls", time.Now().Add(-2*time.Hour))
		return err == nil && n == 6
	})
	_, metrics := get(t, "http://"+g.a.sc.AdminAddr()+"/metrics")
	for _, want := range []string{
		`tollgate_requests_total{decision="shadow_feature_required",route="/api/exports/**"} 1`,
		`tollgate_requests_total{decision="shadow_subscription_required",route="/api/**"} 1`,
		`tollgate_requests_total{decision="feature_required",route="/api/enforced/**"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
