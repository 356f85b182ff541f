package sidecar

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// metrics.per_customer adds the customer-labelled series, fed by the
// proxy (decisions) and the meter (units); without it none exist.
func TestPerCustomerMetrics(t *testing.T) {
	rd := testrig.StartRedis(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Tollgate-Usage", "3")
	}))
	defer app.Close()
	for _, on := range []bool{false, true} {
		cfg := meteringConfig(t, app.URL, rd.URL(), "http://127.0.0.1:1")
		cfg.Stripe.SecretKey = "" // count only
		cfg.Metrics.PerCustomer = on
		r := start(t, cfg)
		tok := customerToken(t, cfg.Auth.JWT.HMACSecret, "cus_M")
		for range 2 {
			req, _ := http.NewRequest("GET", "http://"+r.sc.ProxyAddr()+"/api/x", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("request: %v %v", resp, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		scrape := func() string {
			_, body := get(t, "http://"+r.sc.AdminAddr()+"/metrics")
			return body
		}
		if !on {
			if s := scrape(); strings.Contains(s, "tollgate_customer_") {
				t.Errorf("per-customer series without metrics.per_customer:\n%s", grepLines(s, "tollgate_customer_"))
			}
			continue
		}
		testrig.Eventually(t, "per-customer series", func() bool {
			s := scrape()
			return strings.Contains(s, `tollgate_customer_requests_total{customer="cus_M",decision="allowed"} 2`) &&
				strings.Contains(s, `tollgate_customer_usage_units_total{customer="cus_M",meter="calls"} 6`)
		})
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
