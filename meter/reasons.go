package meter

import "github.com/tollgate-dev/tollgate/config"

// ReportErrorReasons are the reason labels of
// tollgate_usage_report_errors_total (README "Metering", "Metrics"). New
// creates every one at 0 for each configured meter, so that an alert on a
// first parked report, a first auth failure or a first dropped count can
// fire (increase() never sees the first increment of a series that
// appears at 1). TestReportErrorReasonsListed keeps this list complete.
var ReportErrorReasons = []string{
	// Retried: Stripe or the network failed, or the key is wrong.
	"rate_limited", "conflict", "server_error", "timeout", "network", "auth", "store", "stale_item",
	// Parked: Stripe refused the report for good; never retried.
	"unknown_customer", "unknown_meter", "not_found", "invalid_request", "no_subscription_item",
	"stale_intent", "idempotency_conflict",
	// Counts that could not be kept.
	"buffer_full_merged", "buffer_full_dropped", "lost_at_shutdown", "counted_after_close",
	// Refused or held by checked arithmetic (units.go).
	reasonInvalidUnits, reasonOverflow, reasonCorrupt,
}

// initSeries creates the per-meter usage series at 0.
func (m *Meter) initSeries(meters map[string]*config.Meter) {
	for name := range meters {
		m.metrics.UsageReportedUnits.WithLabelValues(name)
		for _, r := range ReportErrorReasons {
			m.metrics.UsageReportErrors.WithLabelValues(name, r)
		}
	}
	// A failed read of the due index belongs to no meter.
	m.metrics.UsageReportErrors.WithLabelValues("", "store")
}
