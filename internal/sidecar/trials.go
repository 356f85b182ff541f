package sidecar

import (
	"log/slog"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/internal/metrics"
)

// initLifecycleMetrics creates the subscription, trial and seat series of
// every configured plan at 0, so that an alert on them can fire before
// anything happened.
func initLifecycleMetrics(m *metrics.Metrics, cfg *config.Config) {
	for name, p := range cfg.Plans {
		for _, st := range metrics.SubscriptionStatuses {
			m.Subscriptions.WithLabelValues(name, st).Set(0)
		}
		for _, r := range metrics.TrialResults {
			m.TrialConversions.WithLabelValues(name, r)
		}
		if p.Seats.Limited() {
			m.SeatsInUse.WithLabelValues(name).Set(0)
		}
	}
}

// observeTrials wraps the customer store so that every trial's end a
// write of this replica stores is counted in
// tollgate_trial_conversions_total. The store commits a change once
// (WATCH/MULTI): of two replicas refreshing one customer, only the one
// whose write stored the change sees it, and a redelivered or replayed
// event finds the change stored already, so each end counts once.
func observeTrials(st entitlements.Store, cfg *config.Config, m *metrics.Metrics, log *slog.Logger) entitlements.Store {
	plans := entitlements.NewPlans(cfg.Plans)
	return entitlements.Observe(st, func(before, after *entitlements.State) {
		for _, e := range plans.TrialEnds(before, after) {
			m.TrialConversions.WithLabelValues(e.Plan, e.Result).Inc()
			log.Info("trial ended", "customer", before.Customer, "subscription", e.Subscription, "plan", e.Plan,
				"result", e.Result, "source", sourceOf(after))
		}
	})
}

// sourceOf says which write ended a trial (webhook:evt_…, sync, …).
func sourceOf(st *entitlements.State) string {
	if st == nil {
		return "deleted"
	}
	return st.Source
}
