package sidecar

import (
	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/webhook"
)

// initOperatorMetrics creates the series of the operator tools at 0, so
// that an alert on them can fire before anything happened: every replay
// result, and the drift of every configured meter.
func initOperatorMetrics(m *metrics.Metrics, cfg *config.Config) {
	for _, r := range webhook.ReplayResults {
		m.WebhookReplayed.WithLabelValues(r)
	}
	for name := range cfg.Metering.Meters {
		m.UsageDriftUnits.WithLabelValues(name).Set(0)
	}
}
