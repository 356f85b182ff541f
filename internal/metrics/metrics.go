// Package metrics defines every Prometheus series tollgate exports, with the
// names the SPEC promises (prefix tollgate_), on a registry of its own so
// that tests and several in-process instances never collide.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds tollgate's collectors.
type Metrics struct {
	Registry *prometheus.Registry

	Requests         *prometheus.CounterVec   // route, decision
	RequestDuration  *prometheus.HistogramVec // route
	UpstreamDuration prometheus.Histogram
	JWTValidations   *prometheus.CounterVec // result
	// The JWKS series exist only when auth.jwt.jwks_url is set: the auth
	// package creates them, so an HMAC or PEM deployment shows no
	// "never fetched" timestamp that an alert would take for a failure.
	JWKSFetches     *prometheus.CounterVec // result: ok, failed
	JWKSLastSuccess *prometheus.GaugeVec   // no labels

	EntitlementCache *prometheus.CounterVec // result: hit, miss, negative, stale, unavailable
	EntitlementAge   prometheus.Histogram
	WebhookEvents    *prometheus.CounterVec // type, result
	WebhookReplayed  *prometheus.CounterVec // result
	// UserLinks counts what checkouts did to user→customer links; result:
	// linked, conflict, unverified, mismatch (LinkResults).
	UserLinks *prometheus.CounterVec

	UsageUnits         *prometheus.CounterVec // meter
	UsageReportedUnits *prometheus.CounterVec // meter
	UsagePendingUnits  *prometheus.GaugeVec   // meter
	UsageReportErrors  *prometheus.CounterVec // meter, reason
	UsageDriftUnits    *prometheus.GaugeVec   // meter
	UsageInvalid       *prometheus.CounterVec // meter
	QuotaLeaseRequests *prometheus.CounterVec // result

	StripeRequests        *prometheus.CounterVec   // operation, code
	StripeRequestDuration *prometheus.HistogramVec // operation

	// Subscriptions and SeatsInUse are counted from the store by one
	// replica at a time (the others export 0); TrialConversions is counted
	// by the replica whose write stored the trial's end.
	Subscriptions    *prometheus.GaugeVec   // plan, status
	SeatsInUse       *prometheus.GaugeVec   // plan
	TrialConversions *prometheus.CounterVec // plan, result

	// Per-customer series exist only after EnablePerCustomer
	// (metrics.per_customer); nil otherwise.
	CustomerRequests   *prometheus.CounterVec // customer, decision
	CustomerUsageUnits *prometheus.CounterVec // customer, meter
}

// QuotaLeaseResults are the result labels of
// tollgate_quota_lease_requests_total, each present at 0 from start.
var QuotaLeaseResults = []string{"granted", "exhausted", "synced", "returned", "error", "corrupt"}

// EnablePerCustomer registers the per-customer series. Each customer adds
// a series per decision and per meter, so a large customer base means a
// large scrape: it is off unless metrics.per_customer is set.
func (m *Metrics) EnablePerCustomer() {
	if m.CustomerRequests != nil {
		return
	}
	m.CustomerRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_customer_requests_total",
		Help: "Requests of authenticated callers by Stripe customer and decision (metrics.per_customer).",
	}, []string{"customer", "decision"})
	m.CustomerUsageUnits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_customer_usage_units_total",
		Help: "Usage units counted by Stripe customer and meter (metrics.per_customer).",
	}, []string{"customer", "meter"})
	m.Registry.MustRegister(m.CustomerRequests, m.CustomerUsageUnits)
}

// New creates the collectors and registers them, plus the Go runtime and
// process collectors, on a new registry.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_requests_total",
			Help: "Requests through the proxy listener by route and decision (allowed, or the denial code).",
		}, []string{"route", "decision"}),
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tollgate_request_duration_seconds",
			Help:    "Time from request arrival to the last response byte, by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
		}, []string{"route"}),
		UpstreamDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tollgate_upstream_duration_seconds",
			Help:    "Time the upstream took to answer with headers.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
		}),
		JWTValidations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_jwt_validations_total",
			Help: "JWT validations by result (ok, or the reason a token was refused).",
		}, []string{"result"}),
		JWKSFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_jwks_fetches_total",
			Help: "JWKS fetches (start, refresh, unknown kid) by result: ok, or failed (the previous keys stay in use).",
		}, []string{"result"}),
		JWKSLastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tollgate_jwks_last_success_timestamp_seconds",
			Help: "Unix time of the last successful JWKS fetch; 0 until the first one.",
		}, nil),
		EntitlementCache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_entitlement_cache_total",
			Help: "Entitlement lookups by result: hit, miss (loaded), negative (known unsubscribed), stale (last known state used while the store is unreachable), unavailable.",
		}, []string{"result"}),
		EntitlementAge: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tollgate_entitlement_age_seconds",
			Help:    "Age of the customer state a decision used: time since it was last confirmed current with the store.",
			Buckets: []float64{0.1, 0.5, 1, 2, 5, 15, 30, 60, 120, 300, 600},
		}),
		WebhookEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_webhook_events_total",
			Help: "Stripe webhook deliveries by event type and result (processed, duplicate, ignored, stale, invalid, failed, busy).",
		}, []string{"type", "result"}),
		WebhookReplayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_webhook_replayed_total",
			Help: "Handled events the background replay took from Stripe's events list, by result (processed: a lost webhook healed; duplicate: already taken).",
		}, []string{"result"}),
		UserLinks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_user_links_total",
			Help: "User→customer links from completed checkouts by result: linked, conflict (the user is linked to another customer; the first link stays), unverified (only a client_reference_id names the user: not linked), mismatch (the session's recorded user and metadata.user_id disagree: not linked).",
		}, []string{"result"}),
		UsageUnits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_usage_units_total",
			Help: "Usage units counted on the request path, by meter.",
		}, []string{"meter"}),
		UsageReportedUnits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_usage_reported_units_total",
			Help: "Usage units Stripe accepted (or already had), by meter.",
		}, []string{"meter"}),
		UsagePendingUnits: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tollgate_usage_pending_units",
			Help: "Usage units counted but not yet reported to Stripe (local buffer and Redis), by meter.",
		}, []string{"meter"}),
		UsageReportErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_usage_report_errors_total",
			Help: "Usage not reported or not kept, by meter and reason: retried (rate_limited, server_error, timeout, network, auth, store, ...), parked (unknown_customer, invalid_request, ...) or lost (buffer_full_dropped, lost_at_shutdown, ...).",
		}, []string{"meter", "reason"}),
		UsageDriftUnits: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tollgate_usage_drift_units",
			Help: "Units by which Stripe's meter event summaries differ from what tollgate counted and finished reporting this month, summed over customers (absolute), by meter; from the periodic reconciliation.",
		}, []string{"meter"}),
		UsageInvalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_usage_invalid_total",
			Help: "Upstream answers whose X-Tollgate-Usage was invalid (malformed, negative, repeated or above metering.max_units_per_request) and were billed the route's default instead, by meter.",
		}, []string{"meter"}),
		QuotaLeaseRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_quota_lease_requests_total",
			Help: "Quota lease calls to the store by result: granted (a share taken), exhausted (the quota could not pay for the request), synced (usage reported, shares renewed or returned), returned (at shutdown), error, corrupt (the customer's ledger holds a value that is not a valid count: refused until repaired).",
		}, []string{"result"}),
		StripeRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_stripe_requests_total",
			Help: "Stripe API requests by operation and HTTP status code (0 for transport errors).",
		}, []string{"operation", "code"}),
		StripeRequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tollgate_stripe_request_duration_seconds",
			Help:    "Stripe API request latency by operation.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}, []string{"operation"}),
		Subscriptions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tollgate_subscriptions",
			Help: "Stored subscriptions by plan and Stripe status, counted from the store every metrics.subscriptions_interval by one replica at a time (the others export 0: use max() or sum() across replicas).",
		}, []string{"plan", "status"}),
		SeatsInUse: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tollgate_seats_in_use",
			Help: "Seats held, summed over the customers whose entitled plan limits seats, by that plan; counted like tollgate_subscriptions.",
		}, []string{"plan"}),
		TrialConversions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_trial_conversions_total",
			Help: "Trials that ended, by plan and result: converted (trialing to active), canceled (by the customer, or before the trial's end), expired (the trial ended unpaid: paused, past_due, unpaid, incomplete, or ended at its end). Each once across replicas.",
		}, []string{"plan", "result"}),
	}
	reg.MustRegister(m.Requests, m.RequestDuration, m.UpstreamDuration, m.JWTValidations,
		m.JWKSFetches, m.JWKSLastSuccess,
		m.EntitlementCache, m.EntitlementAge, m.WebhookEvents, m.WebhookReplayed, m.UserLinks,
		m.UsageUnits, m.UsageReportedUnits, m.UsagePendingUnits, m.UsageReportErrors, m.UsageDriftUnits,
		m.UsageInvalid, m.QuotaLeaseRequests,
		m.StripeRequests, m.StripeRequestDuration,
		m.Subscriptions, m.SeatsInUse, m.TrialConversions,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, r := range QuotaLeaseResults {
		m.QuotaLeaseRequests.WithLabelValues(r)
	}
	for _, r := range LinkResults {
		m.UserLinks.WithLabelValues(r) // at 0 from start: an alert on conflicts can fire
	}
	return m
}

// SubscriptionStatuses are the status labels of tollgate_subscriptions:
// the Stripe statuses a stored subscription can have (ended ones, canceled
// and incomplete_expired, are not kept in the store).
var SubscriptionStatuses = []string{"active", "trialing", "past_due", "unpaid", "incomplete", "paused"}

// TrialResults are the result labels of tollgate_trial_conversions_total.
var TrialResults = []string{"converted", "canceled", "expired"}

// LinkResults are the result labels of tollgate_user_links_total.
var LinkResults = []string{"linked", "conflict", "unverified", "mismatch"}
