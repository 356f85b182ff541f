package sidecar

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/config"
)

// The operator tools' series exist at 0 from start: every replay result
// and the drift of every configured meter, so an alert on "replayed
// events healed something" or "drift" can be written before either
// happened.
func TestOperatorSeriesExistFromStart(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer app.Close()
	cfg := testConfig(t, app.URL)
	cfg.Metering.Meters = map[string]*config.Meter{"api_calls": {EventName: "api_calls"}, "exports": {EventName: "exports"}}
	r := start(t, cfg)
	_, body := get(t, "http://"+r.sc.AdminAddr()+"/metrics")
	for _, want := range []string{
		`tollgate_webhook_replayed_total{result="processed"} 0`,
		`tollgate_webhook_replayed_total{result="duplicate"} 0`,
		`tollgate_webhook_replayed_total{result="failed"} 0`,
		`tollgate_usage_drift_units{meter="api_calls"} 0`,
		`tollgate_usage_drift_units{meter="exports"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics at start lacks %s", want)
		}
	}
}
