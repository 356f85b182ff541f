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
	}
	reg.MustRegister(m.Requests, m.RequestDuration, m.UpstreamDuration, m.JWTValidations,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
