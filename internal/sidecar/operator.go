package sidecar

import (
	"context"
	"sync"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/meter"
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

// startReconcile runs the periodic usage reconciliation
// (metering.reconcile_interval) on whichever replica takes its lease; it
// needs a Stripe key and meters.
func (s *Sidecar) startReconcile(ctx context.Context, wg *sync.WaitGroup) {
	cfg := s.cfg
	if cfg.Metering.ReconcileInterval <= 0 || cfg.Stripe.SecretKey == "" || len(cfg.Metering.Meters) == 0 {
		return
	}
	rec := &meter.Reconciler{Redis: s.Store.Client, Keys: s.Store.Keys, Config: cfg.Metering,
		Summaries: meter.NewStripeSummaries(s.Stripe), Metrics: s.Metrics, Log: s.log, Now: s.now}
	wg.Add(1)
	go func() {
		defer wg.Done()
		rec.RunEvery(ctx, cfg.Metering.ReconcileInterval)
	}()
}
