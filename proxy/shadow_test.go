package proxy

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/logging"
	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// codeGate denies with the code named by the caller's customer id
// ("cus_feature_required" → 403 feature_required; "cus_ok" is allowed),
// the way the entitlements gate would, with the caller's plan headers.
type codeGate struct{}

var gateStatus = map[string]int{
	"subscription_required": http.StatusPaymentRequired, "plan_required": http.StatusForbidden,
	"feature_required": http.StatusForbidden, "quota_exceeded": http.StatusTooManyRequests,
	"seat_limit": http.StatusForbidden, "entitlements_unavailable": http.StatusServiceUnavailable,
}

func (codeGate) Decide(_ context.Context, _ *config.Route, id auth.Identity) (Decision, *HTTPError) {
	d := Decision{Plan: "free", Status: "active", Features: "basic"}
	code := strings.TrimPrefix(id.Customer, "cus_")
	if st, ok := gateStatus[code]; ok {
		return d, &HTTPError{Status: st, Code: code, Msg: "denied", RetryAfter: 60}
	}
	return d, nil
}

// Shadow mode forwards every entitlement denial with the code in
// X-Tollgate-Shadow-Denial, counts it as shadow_<code>, logs would_deny
// with the request id, and meters the request; what is not an entitlement
// denial (401, no_route, 503) still applies. A route's shadow overrides
// gating.mode both ways.
func TestShadowMode(t *testing.T) {
	yes, no := true, false
	for _, mode := range []string{config.ModeEnforce, config.ModeShadow} {
		t.Run(mode, func(t *testing.T) {
			counter := &recordingCounter{units: map[string]int64{}}
			var logs testrig.LogBuffer
			rig := newProxy(t, func(c *config.Config, o *Options) {
				c.Gating.Mode = mode
				c.Routes = []*config.Route{
					{Name: "forced-shadow", Path: "/shadow/**", Require: config.Require{Subscription: true}, Meter: "calls", Shadow: &yes},
					{Name: "forced-enforce", Path: "/enforce/**", Require: config.Require{Subscription: true}, Meter: "calls", Shadow: &no},
					{Name: "global", Path: "/global/**", Require: config.Require{Subscription: true}, Meter: "calls"},
				}
				o.Gate, o.Counter = codeGate{}, counter
				o.Logger = logging.New(config.Log{Level: "info"}, &logs)
			}, nil)
			addr := rig.front.Listener.Addr().String()
			for _, c := range []struct {
				route, code string // code: the gate's denial, "ok" for none
				noToken     bool
				wantStatus  int
				wantShadow  string // X-Tollgate-Shadow-Denial the app saw; "" = none or not forwarded
			}{
				{route: "shadow", code: "ok", wantStatus: 200},
				{route: "shadow", code: "subscription_required", wantStatus: 200, wantShadow: "subscription_required"},
				{route: "shadow", code: "plan_required", wantStatus: 200, wantShadow: "plan_required"},
				{route: "shadow", code: "feature_required", wantStatus: 200, wantShadow: "feature_required"},
				{route: "shadow", code: "quota_exceeded", wantStatus: 200, wantShadow: "quota_exceeded"},
				{route: "shadow", code: "seat_limit", wantStatus: 200, wantShadow: "seat_limit"},
				{route: "shadow", code: "entitlements_unavailable", wantStatus: 503},
				{route: "shadow", code: "ok", noToken: true, wantStatus: 401},
				{route: "enforce", code: "feature_required", wantStatus: 403},
				{route: "enforce", code: "quota_exceeded", wantStatus: 429},
				{route: "global", code: "feature_required", wantStatus: map[string]int{config.ModeEnforce: 403, config.ModeShadow: 200}[mode],
					wantShadow: map[string]string{config.ModeShadow: "feature_required"}[mode]},
				{route: "nowhere", code: "feature_required", wantStatus: 403}, // no_route
			} {
				customer := "cus_" + c.code
				hdr := []string{"Authorization: Bearer good:u1:" + customer,
					// Issue 16: a client must never pose a shadow denial (or hide one).
					"X-Tollgate-Shadow-Denial: client-says-so", "X_Tollgate_Shadow_Denial: client-says-so"}
				if c.noToken {
					hdr = hdr[1:]
				}
				before, seenBefore := counter.get(customer+"/calls"), len(rig.backend.requests())
				resp := rawRequest(t, addr, "GET", "/"+c.route+"/x", hdr...)
				name := c.route + " " + c.code
				if resp.StatusCode != c.wantStatus {
					t.Errorf("%s: status %d; want %d", name, resp.StatusCode, c.wantStatus)
				}
				reqs := rig.backend.requests()
				forwarded := len(reqs) > seenBefore
				if forwarded != (c.wantStatus == 200) {
					t.Errorf("%s: forwarded=%v; want %v", name, forwarded, c.wantStatus == 200)
					continue
				}
				wantUnits := int64(0)
				if forwarded {
					wantUnits = 1
					got := reqs[len(reqs)-1].Header
					if v := got.Values(HeaderShadowDenial); strings.Join(v, ",") != c.wantShadow {
						t.Errorf("%s: app saw %s %q; want %q", name, HeaderShadowDenial, v, c.wantShadow)
					}
					if got.Get("X_Tollgate_Shadow_Denial") != "" {
						t.Errorf("%s: app saw the client's X_Tollgate_Shadow_Denial", name)
					}
					if got.Get(HeaderPlan) != "free" || got.Get(HeaderFeatures) != "basic" {
						t.Errorf("%s: app saw plan %q features %q; want the caller's (free, basic)", name, got.Get(HeaderPlan), got.Get(HeaderFeatures))
					}
					if resp.Header.Get("Retry-After") != "" {
						t.Errorf("%s: client got the denial's Retry-After on a forwarded answer", name)
					}
				}
				if d := counter.get(customer+"/calls") - before; d != wantUnits {
					t.Errorf("%s: metered %d units; want %d (shadowed requests are metered as allowed ones)", name, d, wantUnits)
				}
			}

			// Counted per code, and present at 0 before any happened.
			label := map[string]string{config.ModeEnforce: "feature_required", config.ModeShadow: "shadow_feature_required"}[mode]
			if got := testutil.ToFloat64(rig.metrics.Requests.WithLabelValues("global", label)); got != 1 {
				t.Errorf("requests_total{route=global,decision=%s} = %v; want 1", label, got)
			}
			if got := testutil.ToFloat64(rig.metrics.Requests.WithLabelValues("forced-shadow", "shadow_quota_exceeded")); got != 1 {
				t.Errorf("requests_total{route=forced-shadow,decision=shadow_quota_exceeded} = %v; want 1", got)
			}
			if got := testutil.ToFloat64(rig.metrics.Requests.WithLabelValues("forced-enforce", "shadow_feature_required")); got != 0 {
				t.Errorf("an enforcing route counted a shadow denial: %v", got)
			}

			lines, err := testrig.ParseLogLines(logs.String())
			if err != nil {
				t.Fatal(err)
			}
			wouldDeny := map[string]int{}
			for _, l := range lines {
				if l["msg"] != "would_deny" {
					continue
				}
				if id, _ := l["request_id"].(string); id == "" || l["level"] != "INFO" {
					t.Errorf("would_deny line %v: want level INFO and a request_id", l)
				}
				wouldDeny[l["route"].(string)+" "+l["code"].(string)]++
			}
			wantLines := 5
			if mode == config.ModeShadow {
				wantLines++
			}
			if len(wouldDeny) != wantLines || wouldDeny["forced-shadow quota_exceeded"] != 1 {
				t.Errorf("would_deny lines %v; want %d distinct, one per shadowed denial", wouldDeny, wantLines)
			}
		})
	}
}

// Series of the shadow decisions exist at 0 from start on shadowed routes,
// and only there.
func TestShadowSeriesAtZero(t *testing.T) {
	yes := true
	rig := newProxy(t, func(c *config.Config, o *Options) {
		c.Routes = []*config.Route{
			{Name: "s", Path: "/s/**", Require: config.Require{Features: []string{"x"}}, Shadow: &yes},
			{Name: "e", Path: "/e/**", Require: config.Require{Features: []string{"x"}}},
			{Name: "public", Path: "/**", Auth: config.AuthNone, Shadow: &yes},
		}
		o.Gate = codeGate{}
	}, nil)
	families, err := rig.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range families {
		if f.GetName() != "tollgate_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			lv := map[string]string{}
			for _, l := range m.GetLabel() {
				lv[l.GetName()] = l.GetValue()
			}
			if strings.HasPrefix(lv["decision"], "shadow_") {
				got[lv["route"]+" "+lv["decision"]] = true
			}
		}
	}
	for _, c := range shadowCodes {
		if !got["s shadow_"+c] {
			t.Errorf("tollgate_requests_total{route=s,decision=shadow_%s} is not there at start", c)
		}
	}
	if len(got) != len(shadowCodes) {
		t.Errorf("shadow series at start: %v; want only route s's", got)
	}
}
