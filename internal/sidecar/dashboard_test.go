package sidecar

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"gopkg.in/yaml.v3"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

const (
	dashboardPath = "../../deploy/grafana/tollgate.json"
	alertsPath    = "../../deploy/prometheus/alerts.yaml"
)

// notExportedByTollgate are metric names the deploy files may query that
// no tollgate process exports: up is Prometheus's own per-target series.
var notExportedByTollgate = map[string]bool{"up": true}

// beingAddedInParallel are metrics of the SPEC that other changes are
// adding at the same time as the dashboard (issue 9: quota leases and
// refused usage headers). Remove a name once its change has landed; the
// test then insists on it like on every other.
var beingAddedInParallel = map[string]bool{}

// dashboardExprs returns every PromQL expression of the Grafana dashboard:
// panel targets, and the metric of each label_values() variable query.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	var out []string
	labelValues := regexp.MustCompile(`^label_values\(([^,{)]+)`)
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				walk(c, k)
			}
		case []any:
			for _, c := range v {
				walk(c, key)
			}
		case string:
			switch {
			case key == "expr":
				out = append(out, v)
			case key == "query" || key == "definition":
				if m := labelValues.FindStringSubmatch(v); m != nil {
					out = append(out, m[1])
				}
			}
		}
	}
	walk(doc, "")
	return out
}

// alertExprs returns the expression of every rule in alerts.yaml.
func alertExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(alertsPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", alertsPath, err)
	}
	var out []string
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			out = append(out, r.Expr)
		}
	}
	return out
}

// jwksServer publishes one RSA key, so that the tollgate under test runs
// with a JWKS (its series exist only then).
func jwksServer(t testing.TB) (*rsa.PrivateKey, string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	body := fmt.Sprintf(`{"keys":[{"kty":"RSA","kid":"k1","alg":"RS256","use":"sig","n":%q,"e":%q}]}`,
		b64(key.N.Bytes()), b64(big.NewInt(int64(key.E)).Bytes()))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return key, srv.URL + "/jwks.json"
}

// Issue 12: a panel or an alert on a metric tollgate does not export shows
// "No data" or never fires, and nobody notices until the day it matters. A
// real tollgate (proxy, gate, meter with reporting, webhook, JWKS) serves
// one gated request, which also makes its first Stripe call; then every
// metric the dashboard and the alerts query must be on /metrics.
func TestDashboardAndAlertMetricsAreExported(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	stripe := testrig.NewStripeDouble(t)
	app := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer app.Close()
	key, jwksURL := jwksServer(t)
	cfg := seriesConfig(t, app.URL, rd.URL(), stripe.URL())
	cfg.Auth.JWT.HMACSecret = ""
	cfg.Auth.JWT.Algorithms = []string{"RS256"}
	cfg.Auth.JWT.JWKSURL = jwksURL
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := start(t, cfg)
	testrig.Eventually(t, "ready (JWKS loaded)", func() bool {
		code, _ := get(t, "http://"+r.sc.AdminAddr()+"/readyz")
		return code == http.StatusOK
	})
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"sub": "u1", "aud": "api", "exp": time.Now().Add(time.Hour).Unix(), "stripe_customer_id": "cus_Dash1"})
	tok.Header["kid"] = "k1"
	signed, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	if code := callStatus(t, "http://"+r.sc.ProxyAddr()+"/api/x", signed); code == http.StatusUnauthorized {
		t.Fatalf("gated request = 401: the JWKS key was not used")
	}

	exported := map[string]bool{}
	for name := range scrape(t, r.sc.AdminAddr()) {
		exported[name] = true
	}
	queried := map[string][]string{} // metric -> files that query it
	for _, src := range []struct {
		file  string
		exprs []string
	}{{dashboardPath, dashboardExprs(t)}, {alertsPath, alertExprs(t)}} {
		if len(src.exprs) < 10 {
			t.Fatalf("%s: found %d expressions; the reader no longer matches the file", src.file, len(src.exprs))
		}
		for _, e := range src.exprs {
			for _, n := range metricNames(e) {
				n = familyOf(n, exported)
				if !slices.Contains(queried[n], src.file) {
					queried[n] = append(queried[n], src.file)
				}
			}
		}
	}
	for name, files := range queried {
		switch {
		case exported[name], notExportedByTollgate[name]:
		case beingAddedInParallel[name]:
			t.Logf("%s (queried by %v) is not exported yet: allowed while its change lands", name, files)
		default:
			t.Errorf("%v query %s, which tollgate does not export", files, name)
		}
	}
	for name := range beingAddedInParallel {
		if exported[name] {
			t.Errorf("%s is exported now: remove it from beingAddedInParallel", name)
		}
	}
}
