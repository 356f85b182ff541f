package proxy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/metrics"
)

// Decision labels of tollgate_requests_total that are not a denial code.
const (
	decisionAllowed       = "allowed"
	decisionInternal      = "internal"       // a mount: tollgate's own endpoint
	decisionUpstreamError = "upstream_error" // 502/504
	decisionPreflight     = "preflight"      // answered by tollgate's CORS
	labelNoRoute          = "-"              // the route label of a request no route matched
)

// initSeries creates, at 0, every tollgate_requests_total and
// tollgate_request_duration_seconds series the configuration makes
// possible, so that an alert on the first denial or upstream error of a
// route can fire: rate() and increase() never see the first increment of a
// series that appears at 1 (SPEC "Metrics": known labels exist from start).
// Decisions a route cannot produce (quota_exceeded on a route without a
// limited meter) are left out to keep the series count proportional to the
// config.
func (s *Server) initSeries(c *config.Config) {
	limited := map[string]bool{}
	for _, p := range c.Plans {
		for m := range p.Limits {
			limited[m] = true
		}
	}
	for i := range s.routes {
		rt := &s.routes[i]
		rt.series = routeSeries{duration: s.metrics.RequestDuration.WithLabelValues(rt.label),
			byDecision: map[string]prometheus.Counter{}}
		for _, d := range routeDecisions(rt.cfg, limited[rt.cfg.Meter]) {
			rt.series.byDecision[d] = s.metrics.Requests.WithLabelValues(rt.label, d)
		}
		rt.series.allowed = rt.series.byDecision[decisionAllowed]
	}
	s.initSeatSeries(c, limited)
	for _, m := range s.mounts {
		s.metrics.RequestDuration.WithLabelValues(m.Path)
		s.metrics.Requests.WithLabelValues(m.Path, decisionInternal)
		if m.Auth {
			s.metrics.Requests.WithLabelValues(m.Path, errUnauthenticated.Code)
		}
	}
	s.metrics.RequestDuration.WithLabelValues(labelNoRoute)
	s.metrics.Requests.WithLabelValues(labelNoRoute, errNoRoute.Code)
	s.metrics.Requests.WithLabelValues(labelNoRoute, errBadPath.Code)
	if s.cors != nil {
		s.metrics.Requests.WithLabelValues(labelNoRoute, decisionPreflight)
	}
}

// routeDecisions lists the decisions a route can be counted with.
func routeDecisions(rc *config.Route, limitedMeter bool) []string {
	out := []string{decisionAllowed, decisionUpstreamError}
	if rc.AuthMode() != config.AuthNone {
		out = append(out, errUnauthenticated.Code)
	}
	if rc.Require.Any() || limitedMeter {
		out = append(out, "subscription_required", errUnavailable.Code)
	}
	if len(rc.Require.Plans) > 0 {
		out = append(out, "plan_required")
	}
	if len(rc.Require.Features) > 0 {
		out = append(out, "feature_required")
	}
	if limitedMeter {
		out = append(out, "quota_exceeded")
	}
	return out
}

// routeSeries are a route's request metrics, resolved once: WithLabelValues
// hashes its labels and takes the vector's lock on every call.
type routeSeries struct {
	duration   prometheus.Observer
	allowed    prometheus.Counter
	byDecision map[string]prometheus.Counter // the decisions routeDecisions lists
}

// counter is the route's tollgate_requests_total series for decision.
func (rs *routeSeries) counter(m *metrics.Metrics, label, decision string) prometheus.Counter {
	if decision == decisionAllowed {
		return rs.allowed
	}
	if c, ok := rs.byDecision[decision]; ok {
		return c
	}
	return m.Requests.WithLabelValues(label, decision)
}
