package proxy

import (
	"context"
	"slices"
)

// HeaderShadowDenial tells the app, on a route in shadow mode, which
// entitlement denial tollgate would have answered: the denial's code. It is
// in the reserved namespace, so a client can never send it.
const HeaderShadowDenial = "X-Tollgate-Shadow-Denial"

// shadowCodes are the entitlement denials that shadow mode forwards instead
// of answering (SPEC "Shadow mode": 402/403/429). Everything else still
// applies: 400 (path, method), 401, 403 no_route, and 503
// entitlements_unavailable, which says tollgate does not know, not that the
// caller is not entitled (fail_open is the route's choice there).
var shadowCodes = []string{"subscription_required", "plan_required", "feature_required", "quota_exceeded", "seat_limit"}

// shadow decides what a denial from the gate (or a quota reservation) does
// on the request's route. On a route in shadow mode an entitlement denial is
// logged as would_deny, labelled shadow_<code> in
// tollgate_requests_total, passed to the app in X-Tollgate-Shadow-Denial,
// and the request goes on (it is metered as any other); shadow returns
// true then. Any other denial, or any denial on an enforcing route, returns
// false: the caller answers it.
func (s *Server) shadow(ctx context.Context, x *exchange, e *HTTPError) bool {
	if !x.route.shadow || !slices.Contains(shadowCodes, e.Code) {
		return false
	}
	x.shadowDenial = e.Code
	x.outcome = "shadow_" + e.Code
	s.log.InfoContext(ctx, "would_deny", "code", e.Code, "status", e.Status, "route", x.route.label,
		"customer", x.id.Customer)
	return true
}

// setUpShadow creates the shadow_<code> series of every shadowed route
// that requires something or is metered at 0, so that a dashboard or an
// alert on them works before the first one happens, and warns that those
// routes do not enforce.
func (s *Server) setUpShadow() {
	var shadowed []string
	for _, rt := range s.routes {
		if !rt.shadow || (!rt.cfg.Require.Any() && rt.cfg.Meter == "") {
			continue
		}
		shadowed = append(shadowed, rt.label)
		for _, c := range shadowCodes {
			s.metrics.Requests.WithLabelValues(rt.label, "shadow_"+c)
		}
	}
	if len(shadowed) > 0 {
		s.log.Warn("shadow mode: entitlement denials on these routes are forwarded to the app, not enforced "+
			"(X-Tollgate-Shadow-Denial, would_deny)", "routes", shadowed)
	}
}

// shadowReserve is shadow for the reserve step (step 9). A request that a
// route in shadow mode forwards over its quota reserves nothing, but its
// units are still counted against the quota (Overrun): they are billed,
// so a route on the same meter that enforces must count them too.
func (s *Server) shadowReserve(ctx context.Context, x *exchange, e *HTTPError) bool {
	if !s.shadow(ctx, x, e) {
		return false
	}
	if e.Code != codeQuotaExceeded || x.bill == nil || s.quota == nil {
		return true
	}
	h, err := s.quota.Overrun(x.claim())
	if err != nil {
		// Still billed: the quota learns it from the meter's count when
		// its ledger is next opened.
		s.log.WarnContext(ctx, "quota: a shadowed request over the quota is not counted against it", "meter", x.bill.meter, "cause", err.Error())
		return true
	}
	x.bill.hold = h // reserved stays 0: settle reports the units as an overrun
	return true
}
