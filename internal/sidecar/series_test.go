package sidecar

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// scrape reads the admin listener's /metrics into metric families.
func scrape(t *testing.T, adminAddr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// seriesValue finds the series of family name whose labels are exactly
// labels ("k=v,k=v", sorted by key as the exposition writes them).
func seriesValue(fams map[string]*dto.MetricFamily, name, labels string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		var ls []string
		for _, l := range m.GetLabel() {
			ls = append(ls, l.GetName()+"="+l.GetValue())
		}
		if strings.Join(ls, ",") != labels {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// seriesConfig is a config with every kind of labelled series: a public,
// a gated and metered (with a plan limit) and a feature route, a meter,
// the webhook and a Stripe key.
func seriesConfig(t *testing.T, upstream, redisURL, stripeURL string) *config.Config {
	t.Helper()
	cfg := meteringConfig(t, upstream, redisURL, stripeURL)
	cfg.Stripe.WebhookSecrets = []string{"whsec_test"}
	cfg.Plans = map[string]*config.Plan{"pro": {Prices: []string{"price_pro"}, Features: []string{"exports"},
		Limits: map[string]int64{"calls": 100}}, "team": {Prices: []string{"price_team"}, Seats: "5"}}
	cfg.Routes = []*config.Route{
		{Name: "public", Path: "/healthz", Auth: config.AuthNone},
		{Name: "api", Path: "/api/**", Require: config.Require{Subscription: true}, Meter: "calls"},
		{Name: "exports", Path: "/exports/**", Require: config.Require{Features: []string{"exports"}}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config invalid: %v", err)
	}
	return cfg
}

// The SPEC's "Metrics": every labelled series whose labels are known from
// the config exists from start at 0, so that an alert on "never happened"
// (no usage ever reported, a first parked report, a first webhook failure)
// can fire. Without them rate() and increase() see nothing, and the first
// increment of a series that appears at 1 is lost to them.
func TestLabelledSeriesExistAtZeroFromStart(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	stripe := testrig.NewStripeDouble(t)
	app := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer app.Close()
	r := start(t, seriesConfig(t, app.URL, rd.URL(), stripe.URL()))
	fams := scrape(t, r.sc.AdminAddr())

	wants := []struct{ name, labels string }{
		{"tollgate_requests_total", "decision=allowed,route=public"},
		{"tollgate_requests_total", "decision=upstream_error,route=public"},
		{"tollgate_requests_total", "decision=allowed,route=api"},
		{"tollgate_requests_total", "decision=unauthenticated,route=api"},
		{"tollgate_requests_total", "decision=subscription_required,route=api"},
		{"tollgate_requests_total", "decision=entitlements_unavailable,route=api"},
		{"tollgate_requests_total", "decision=quota_exceeded,route=api"},
		{"tollgate_requests_total", "decision=feature_required,route=exports"},
		{"tollgate_requests_total", "decision=no_route,route=-"},
		{"tollgate_requests_total", "decision=internal,route=/_tollgate/stripe/webhook"},
		{"tollgate_request_duration_seconds", "route=api"},
		{"tollgate_request_duration_seconds", "route=public"},
		{"tollgate_entitlement_cache_total", "result=hit"},
		{"tollgate_entitlement_cache_total", "result=stale"},
		{"tollgate_entitlement_cache_total", "result=unavailable"},
		{"tollgate_webhook_events_total", "result=processed,type=invoice.paid"},
		{"tollgate_webhook_events_total", "result=failed,type=customer.subscription.updated"},
		{"tollgate_webhook_events_total", "result=ignored,type=other"},
		{"tollgate_webhook_events_total", "result=invalid,type=unverified"},
		{"tollgate_jwt_validations_total", "result=ok"},
		{"tollgate_usage_units_total", "meter=calls"},
		{"tollgate_usage_reported_units_total", "meter=calls"},
		{"tollgate_usage_pending_units", "meter=calls"},
		{"tollgate_usage_report_errors_total", "meter=calls,reason=auth"},
		{"tollgate_usage_report_errors_total", "meter=calls,reason=unknown_customer"},
		{"tollgate_usage_report_errors_total", "meter=calls,reason=buffer_full_dropped"},
		{"tollgate_usage_report_errors_total", "meter=calls,reason=lost_at_shutdown"},
		{"tollgate_requests_total", "decision=seat_limit,route=api"},
		{"tollgate_subscriptions", "plan=pro,status=active"},
		{"tollgate_subscriptions", "plan=team,status=incomplete"},
		{"tollgate_trial_conversions_total", "plan=pro,result=converted"},
		{"tollgate_trial_conversions_total", "plan=team,result=canceled"},
		{"tollgate_trial_conversions_total", "plan=team,result=expired"},
		{"tollgate_seats_in_use", "plan=team"},
	}
	for _, w := range wants {
		v, ok := seriesValue(fams, w.name, w.labels)
		if !ok {
			t.Errorf("%s{%s} missing at start", w.name, w.labels)
			continue
		}
		if v != 0 {
			t.Errorf("%s{%s} = %v at start; want 0", w.name, w.labels, v)
		}
	}
}
