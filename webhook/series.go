package webhook

// Type labels of tollgate_webhook_events_total besides the handled types.
const (
	typeOther      = "other"      // a verified event of a type tollgate does not act on
	typeUnverified = "unverified" // a refused delivery: no verified event to name
)

// initSeries creates, at 0, the tollgate_webhook_events_total series the
// alerts and dashboard rely on (SPEC "Metrics": known labels exist from
// start): a first failure of an event type must show in rate(), and "no
// event verified at all" (a wrong webhook secret) is only visible against
// series of successful results that exist at 0.
func (h *Handler) initSeries() {
	results := []string{resultProcessed, resultDuplicate, resultIgnored, resultFailed, resultBusy}
	if h.o.Stripe == nil {
		results = append(results, resultStale) // trusted payload mode only
	}
	for _, t := range HandledTypes() {
		for _, r := range results {
			h.metrics.WebhookEvents.WithLabelValues(t, r)
		}
	}
	h.metrics.WebhookEvents.WithLabelValues(typeOther, resultIgnored)
	h.metrics.WebhookEvents.WithLabelValues(typeOther, resultDuplicate)
	h.metrics.WebhookEvents.WithLabelValues(typeUnverified, resultInvalid)
}
