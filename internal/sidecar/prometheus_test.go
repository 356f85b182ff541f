package sidecar

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// Issue 12: what a real Prometheus reads from a running tollgate is what
// happened. tollgate, a real redis-server, an upstream that bills units per
// answer and the Stripe double serve known traffic; Prometheus scrapes the
// admin listener every second; the counters read back through its HTTP API
// equal the requests sent, the units the upstream served and, once
// reported, the units Stripe accepted.
func TestPrometheusScrapesWhatWasServed(t *testing.T) {
	rd := testrig.StartRedis(t)
	stripe := testrig.NewStripeDouble(t)
	ledger := &servedLedger{units: map[string]int64{}}
	app := httptest.NewServer(ledger.handler())
	defer app.Close()
	cfg := meteringConfig(t, app.URL, rd.URL(), stripe.URL())
	cfg.Routes[0].Name = "api"
	r := start(t, cfg)
	prom := testrig.StartPrometheus(t, r.sc.AdminAddr())
	const job = `job="tollgate"`
	prom.WaitValue(t, 30*time.Second, `up{`+job+`}`, 1)

	tokens := []string{customerToken(t, cfg.Auth.JWT.HMACSecret, "cus_PromA"), customerToken(t, cfg.Auth.JWT.HMACSecret, "cus_PromB")}
	const allowed, denied = 37, 5
	var units int64
	for i := range allowed {
		u := int64(1 + i%4)
		units += u
		if code := callStatus(t, fmt.Sprintf("http://%s/api/work?u=%d", r.sc.ProxyAddr(), u), tokens[i%2]); code != http.StatusOK {
			t.Fatalf("request %d = %d; want 200", i, code)
		}
	}
	for range denied {
		if code := callStatus(t, "http://"+r.sc.ProxyAddr()+"/api/work?u=9", ""); code != http.StatusUnauthorized {
			t.Fatalf("request without a token = %d; want 401", code)
		}
	}
	var served int64
	for _, u := range ledger.snapshot() {
		served += u
	}
	if served != units {
		t.Fatalf("upstream served %d units; the test sent %d", served, units)
	}

	prom.WaitValue(t, 30*time.Second, `tollgate_requests_total{`+job+`, route="api", decision="allowed"}`, allowed)
	prom.WaitValue(t, 30*time.Second, `tollgate_requests_total{`+job+`, route="api", decision="unauthenticated"}`, denied)
	prom.WaitValue(t, 30*time.Second, `sum(tollgate_requests_total{`+job+`})`, allowed+denied)
	prom.WaitValue(t, 30*time.Second, `tollgate_usage_units_total{`+job+`, meter="calls"}`, float64(units))
	prom.WaitValue(t, 30*time.Second, `tollgate_usage_reported_units_total{`+job+`, meter="calls"}`, float64(units))
	prom.WaitValue(t, 30*time.Second, `tollgate_request_duration_seconds_count{`+job+`, route="api"}`, allowed+denied)
	// What Stripe accepted is what Prometheus says was reported.
	waitReportedEqualsServed(t, stripe, ledger.snapshot())
}

// call sends one GET with an optional bearer token and returns the status.
func callStatus(t *testing.T, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
