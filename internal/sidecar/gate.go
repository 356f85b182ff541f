package sidecar

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/meter"
	"github.com/tollgate-dev/tollgate/proxy"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// gateAdapter puts the entitlements gate, and the quotas of metered
// routes, behind proxy.Gate, turning denials into the SPEC's answers.
type gateAdapter struct {
	g       *entitlements.Gate
	quotas  *meter.Quotas   // nil when nothing is metered
	limited map[string]bool // meters some plan limits
	now     func() time.Time
}

var _ proxy.Gate = gateAdapter{}

func (a gateAdapter) Decide(ctx context.Context, route *config.Route, id auth.Identity) (proxy.Decision, *proxy.HTTPError) {
	if !route.Require.Any() && !a.limited[route.Meter] {
		return proxy.Decision{}, nil // metered, but no plan limits it: nothing to look up
	}
	d := a.g.Decide(ctx, id.Customer, route.Require, route.FailOpen)
	pd := proxy.Decision{Plan: d.Plan, Status: d.Status, Features: d.Features}
	if d.Denial == nil {
		d.Denial = a.quota(ctx, route, id.Customer, d)
	}
	if d.Denial == nil {
		return pd, nil
	}
	return pd, httpDenial(d.Denial)
}

// quota enforces the plan's per-period limit of the route's meter.
func (a gateAdapter) quota(ctx context.Context, route *config.Route, customer string, d entitlements.Decision) *entitlements.Denial {
	limit, limited := d.Limit(route.Meter)
	if a.quotas == nil || route.Meter == "" || !limited || customer == "" || d.PeriodStart.IsZero() {
		return nil
	}
	used, err := a.quotas.Used(ctx, customer, route.Meter, d.PeriodStart)
	if err != nil {
		if route.FailOpen {
			return nil
		}
		return &entitlements.Denial{Status: http.StatusServiceUnavailable, Code: "entitlements_unavailable",
			Message: "Usage cannot be checked right now; try again shortly."}
	}
	if used < limit {
		return nil
	}
	return &entitlements.Denial{Status: http.StatusTooManyRequests, Code: "quota_exceeded",
		Message: fmt.Sprintf("The %s quota of your plan is used up for this billing period.", route.Meter),
		Limit:   limit, Used: used, RetryAfter: d.PeriodEnd.Sub(a.now())}
}

// limitedMeters lists the meters that some plan puts a limit on.
func limitedMeters(plans map[string]*config.Plan) map[string]bool {
	out := map[string]bool{}
	for _, p := range plans {
		for m := range p.Limits {
			out[m] = true
		}
	}
	return out
}

func httpDenial(dn *entitlements.Denial) *proxy.HTTPError {
	e := &proxy.HTTPError{Status: dn.Status, Code: dn.Code, Msg: dn.Message}
	extra := map[string]any{}
	if dn.UpgradeURL != "" {
		extra["upgrade_url"] = dn.UpgradeURL
	}
	if dn.PaymentURL != "" {
		extra["payment_url"] = dn.PaymentURL // the failed invoice to pay
	}
	if dn.Code == "quota_exceeded" {
		extra["limit"], extra["used"] = dn.Limit, dn.Used
	}
	if len(extra) > 0 {
		e.Extra = extra
	}
	if dn.RetryAfter > 0 {
		e.RetryAfter = int(math.Ceil(dn.RetryAfter.Seconds()))
	}
	return e
}

// quotaCounter counts usage in the meter and in this replica's quota view
// at once, so that a quota holds on one replica without waiting for a
// flush and a refresh.
type quotaCounter struct {
	m meterService
	q *meter.Quotas
}

func (c quotaCounter) Count(customer, meterName string, units int64) {
	c.m.Count(customer, meterName, units)
	c.q.Add(customer, meterName, units)
}
