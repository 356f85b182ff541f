package sidecar

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// A plan limit turns a meter into a quota for the billing period: once
// used up, 429 quota_exceeded with Retry-After to the period end and the
// limit and usage in the body; another meter of the same plan is not
// affected.
func TestQuotaExceeded(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer app.Close()
	cfg := testConfig(t, app.URL)
	cfg.Redis.URL = rd.URL()
	cfg.Metering.FlushInterval, cfg.Metering.Window = 50*time.Millisecond, time.Second
	cfg.Metering.Meters = map[string]*config.Meter{"calls": {EventName: "calls"}, "other": {EventName: "other"}}
	cfg.Plans = map[string]*config.Plan{"starter": {Prices: []string{"price_s"}, Limits: map[string]int64{"calls": 3}}}
	cfg.Routes = []*config.Route{
		{Path: "/api/**", Require: config.Require{Subscription: true}, Meter: "calls"},
		{Path: "/other/**", Require: config.Require{Subscription: true}, Meter: "other"},
	}
	r := start(t, cfg)
	periodEnd := time.Now().Add(10 * 24 * time.Hour).Truncate(time.Second)
	err := r.sc.Customers.Update(context.Background(), "cus_q", func(*entitlements.State) (*entitlements.State, error) {
		return &entitlements.State{Subscriptions: []entitlements.Subscription{{ID: "sub_q", Status: "active",
			Prices: []string{"price_s"}, CurrentPeriodStart: time.Now().Add(-time.Hour), CurrentPeriodEnd: periodEnd}}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := auth.SignHS256([]byte(strings.Repeat("k", 32)), jwt.MapClaims{
		"sub": "u", "stripe_customer_id": "cus_q", "aud": "api", "exp": time.Now().Add(time.Hour).Unix()})
	call := func(path string) *http.Response {
		req, _ := http.NewRequest("GET", "http://"+r.sc.ProxyAddr()+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	for i := 0; i < 3; i++ {
		if resp := call("/api/x"); resp.StatusCode != 200 {
			t.Fatalf("request %d within the quota = %d", i+1, resp.StatusCode)
		}
	}
	var denied *http.Response
	served := 3
	testrig.Eventually(t, "the quota to be enforced", func() bool {
		resp := call("/api/x")
		if resp.StatusCode == 200 {
			served++
			return false
		}
		denied = resp
		return true
	})
	if denied.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("over quota = %d; want 429", denied.StatusCode)
	}
	var body struct {
		Error       struct{ Code string }
		Limit, Used int64
	}
	json.NewDecoder(denied.Body).Decode(&body)
	if body.Error.Code != "quota_exceeded" || body.Limit != 3 || body.Used < 3 {
		t.Errorf("body = %+v; want quota_exceeded, limit 3, used >= 3", body)
	}
	ra, _ := strconv.Atoi(denied.Header.Get("Retry-After"))
	if want := time.Until(periodEnd).Seconds(); float64(ra) < want-60 || float64(ra) > want+60 {
		t.Errorf("Retry-After = %d s; want about %.0f s (to the period end)", ra, want)
	}
	// One replica counts its own units into the quota at once; a request
	// racing the previous one's count is the only possible overrun.
	if served > 4 {
		t.Errorf("quota of 3 enforced after %d requests were served; want at most 4", served)
	}
	if resp := call("/other/x"); resp.StatusCode != 200 {
		t.Errorf("a meter without a limit = %d; want 200", resp.StatusCode)
	}
}
