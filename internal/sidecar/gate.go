package sidecar

import (
	"context"
	"math"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/proxy"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// gateAdapter puts the entitlements gate behind proxy.Gate, turning its
// denials into the HTTP answers of the SPEC.
type gateAdapter struct{ g *entitlements.Gate }

var _ proxy.Gate = gateAdapter{}

func (a gateAdapter) Decide(ctx context.Context, route *config.Route, id auth.Identity) (proxy.Decision, *proxy.HTTPError) {
	d := a.g.Decide(ctx, id.Customer, route.Require, route.FailOpen)
	pd := proxy.Decision{Plan: d.Plan, Status: d.Status, Features: d.Features}
	if d.Denial == nil {
		return pd, nil
	}
	return pd, httpDenial(d.Denial)
}

func httpDenial(dn *entitlements.Denial) *proxy.HTTPError {
	e := &proxy.HTTPError{Status: dn.Status, Code: dn.Code, Msg: dn.Message}
	extra := map[string]any{}
	if dn.UpgradeURL != "" {
		extra["upgrade_url"] = dn.UpgradeURL
	}
	if dn.Limit > 0 {
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
