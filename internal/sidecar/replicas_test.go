package sidecar

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// waitReady waits until every replica's /readyz answers 200.
func waitReady(t *testing.T, replicas ...*running) {
	t.Helper()
	for _, r := range replicas {
		testrig.Eventually(t, "replica ready", func() bool {
			resp, err := http.Get("http://" + r.sc.AdminAddr() + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		})
	}
}

// Two tollgate instances on one real Redis: a state change written through
// one (as a webhook would) is enforced by the other, and the app behind it
// sees the verified plan headers.
func TestTwoReplicasShareState(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{
			"plan": r.Header.Get("X-Tollgate-Plan"), "status": r.Header.Get("X-Tollgate-Status"),
			"features": r.Header.Get("X-Tollgate-Features"), "customer": r.Header.Get("X-Tollgate-Customer"),
		})
	}))
	defer app.Close()
	newCfg := func() *config.Config {
		cfg := testConfig(t, app.URL)
		cfg.Redis.URL = rd.URL()
		cfg.Plans = map[string]*config.Plan{"pro": {Prices: []string{"price_pro"}, Features: []string{"exports"}}}
		cfg.Routes = []*config.Route{{Path: "/api/**", Require: config.Require{Subscription: true}}}
		return cfg
	}
	a, b := start(t, newCfg()), start(t, newCfg())
	waitReady(t, a, b)
	tok, err := auth.SignHS256([]byte(strings.Repeat("k", 32)), jwt.MapClaims{
		"sub": "user_1", "stripe_customer_id": "cus_two", "aud": "api", "exp": time.Now().Add(time.Hour).Unix(),
	})
	if err != nil {
		t.Fatal(err)
	}
	call := func(r *running) (int, map[string]string) {
		req, _ := http.NewRequest("GET", "http://"+r.sc.ProxyAddr()+"/api/x", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]string
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	if code, _ := call(b); code != http.StatusPaymentRequired {
		t.Fatalf("before any state: %d; want 402", code)
	}
	write := func(status string) {
		err := a.sc.Customers.Update(context.Background(), "cus_two", func(*entitlements.State) (*entitlements.State, error) {
			return &entitlements.State{Subscriptions: []entitlements.Subscription{{ID: "sub_1", Status: status,
				Prices: []string{"price_pro"}, CurrentPeriodEnd: time.Now().Add(time.Hour)}}}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	write("active")
	start := time.Now()
	testrig.Eventually(t, "replica b to allow after the subscription", func() bool { code, _ := call(b); return code == 200 })
	t.Logf("replica b enforced the new subscription after %v", time.Since(start))
	if _, body := call(b); body["plan"] != "pro" || body["status"] != "active" || body["features"] != "exports" || body["customer"] != "cus_two" {
		t.Errorf("app saw %v; want plan pro, status active, features exports, customer cus_two", body)
	}
	write("canceled")
	testrig.Eventually(t, "replica b to deny after the cancellation", func() bool { code, _ := call(b); return code == http.StatusPaymentRequired })
}
