package proxy

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tollgate-dev/tollgate/config"
)

const appOrigin = "https://app.test"

// corsProxy is the test proxy with cors.allowed_origins set; the backend
// answers with CORS headers of its own, which tollgate must replace.
func corsProxy(t *testing.T) *proxyRig {
	t.Helper()
	return newProxy(t, func(c *config.Config, _ *Options) {
		c.CORS.AllowedOrigins = []string{appOrigin}
	}, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Allow-Methods", "TRACE")
		w.WriteHeader(http.StatusOK)
	})
}

func TestCORSPreflightAnsweredByTollgate(t *testing.T) {
	rig := corsProxy(t)
	addr := rig.front.Listener.Addr().String()
	cases := []struct {
		name, target string
		headers      []string
		wantOrigin   string // Access-Control-Allow-Origin; "" = none
	}{
		// A preflight never carries a token: on a route that requires one it
		// must still be answered, and never forwarded unauthenticated.
		{"required route, allowed origin", "/admin/x",
			[]string{"Origin: " + appOrigin, "Access-Control-Request-Method: POST", "Access-Control-Request-Headers: authorization,content-type"}, appOrigin},
		{"gated route", "/paid/x", []string{"Origin: " + appOrigin, "Access-Control-Request-Method: DELETE"}, appOrigin},
		{"no route at all", "/nowhere", []string{"Origin: " + appOrigin, "Access-Control-Request-Method: GET"}, appOrigin},
		{"tollgate's billing prefix", "/_tollgate/billing/checkout", []string{"Origin: " + appOrigin, "Access-Control-Request-Method: POST"}, appOrigin},
		{"other origin", "/admin/x", []string{"Origin: https://evil.test", "Access-Control-Request-Method: POST"}, ""},
		{"method not allowed", "/admin/x", []string{"Origin: " + appOrigin, "Access-Control-Request-Method: TRACE"}, ""},
		{"header not allowed", "/admin/x", []string{"Origin: " + appOrigin, "Access-Control-Request-Method: POST", "Access-Control-Request-Headers: x-secret"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(rig.backend.requests())
			resp := rawRequest(t, addr, "OPTIONS", c.target, c.headers...)
			if resp.StatusCode != http.StatusNoContent {
				t.Errorf("preflight = %d; want 204", resp.StatusCode)
			}
			if got := resp.Header.Values("Access-Control-Allow-Origin"); !slices.Equal(got, nonEmpty(c.wantOrigin)) {
				t.Errorf("Access-Control-Allow-Origin = %q; want %q", got, c.wantOrigin)
			}
			if n := len(rig.backend.requests()) - before; n != 0 {
				t.Errorf("the preflight reached the app (%d requests)", n)
			}
			if resp.Header.Get(HeaderRequestID) == "" {
				t.Errorf("preflight answer has no %s", HeaderRequestID)
			}
		})
	}
	resp := rawRequest(t, addr, "OPTIONS", "/admin/x", "Origin: "+appOrigin,
		"Access-Control-Request-Method: POST", "Access-Control-Request-Headers: authorization")
	if got := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")); got != "authorization" {
		t.Errorf("Access-Control-Allow-Headers = %q; want authorization", got)
	}
	if got := resp.Header.Get("Access-Control-Max-Age"); got != "600" {
		t.Errorf("Access-Control-Max-Age = %q; want 600 (the 10m default)", got)
	}
	if n := testutil.ToFloat64(rig.metrics.Requests.WithLabelValues("-", "preflight")); n == 0 {
		t.Errorf(`tollgate_requests_total{decision="preflight"} = 0; want preflights counted`)
	}
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// Answers to an allowed origin carry one Access-Control-Allow-Origin,
// tollgate's: on denials, so the page can read the error code, and on the
// app's answers, whose own CORS headers are dropped.
func TestCORSActualRequests(t *testing.T) {
	rig := corsProxy(t)
	addr := rig.front.Listener.Addr().String()
	cases := []struct {
		name, method, target string
		headers              []string
		wantStatus           int
		wantOrigin           string
	}{
		{"denial to the allowed origin", "GET", "/admin/x", []string{"Origin: " + appOrigin}, 401, appOrigin},
		{"app answer to the allowed origin", "GET", "/admin/x", []string{"Origin: " + appOrigin, "Authorization: Bearer good:u1:cus_1"}, 200, appOrigin},
		{"app answer to another origin", "GET", "/admin/x", []string{"Origin: https://evil.test", "Authorization: Bearer good:u1:cus_1"}, 200, ""},
		{"no origin", "GET", "/public/x", nil, 200, ""},
		// OPTIONS without Access-Control-Request-Method is no preflight: it
		// is routed (and authenticated) like any request.
		{"plain OPTIONS", "OPTIONS", "/admin/x", []string{"Origin: " + appOrigin}, 401, appOrigin},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := rawRequest(t, addr, c.method, c.target, c.headers...)
			if resp.StatusCode != c.wantStatus {
				t.Fatalf("%s %s = %d; want %d", c.method, c.target, resp.StatusCode, c.wantStatus)
			}
			if got := resp.Header.Values("Access-Control-Allow-Origin"); !slices.Equal(got, nonEmpty(c.wantOrigin)) {
				t.Errorf("Access-Control-Allow-Origin = %q; want %q", got, c.wantOrigin)
			}
			if got := resp.Header.Get("Access-Control-Allow-Methods"); got != "" {
				t.Errorf("the app's Access-Control-Allow-Methods %q reached the client", got)
			}
			if c.wantOrigin != "" && !strings.Contains(strings.Join(resp.Header.Values("Vary"), ","), "Origin") {
				t.Errorf("Vary = %q; want Origin in it", resp.Header.Values("Vary"))
			}
		})
	}
}

// With cors unset, tollgate leaves CORS to the app: a preflight is routed
// like any request, and the app's headers pass.
func TestCORSOffByDefault(t *testing.T) {
	rig := newProxy(t, nil, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", appOrigin)
		w.WriteHeader(http.StatusOK)
	})
	addr := rig.front.Listener.Addr().String()
	if resp := rawRequest(t, addr, "OPTIONS", "/admin/x", "Origin: "+appOrigin, "Access-Control-Request-Method: POST"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("preflight on a required route with cors off = %d; want 401 (routed as any request)", resp.StatusCode)
	}
	resp := rawRequest(t, addr, "GET", "/public/x", "Origin: "+appOrigin)
	if got := resp.Header.Values("Access-Control-Allow-Origin"); !slices.Equal(got, []string{appOrigin}) {
		t.Errorf("Access-Control-Allow-Origin = %q; want the app's own", got)
	}
}
