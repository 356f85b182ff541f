package sidecar

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/meter"
	"github.com/tollgate-dev/tollgate/proxy"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// gateAdapter puts the entitlements gate behind proxy.Gate, turning
// denials into the SPEC's answers and telling the proxy the limit on the
// route's meter, which its reserve step enforces.
type gateAdapter struct {
	g       *entitlements.Gate
	limited map[string]bool // meters some plan limits
	seats   *seatGate       // nil: no plan limits seats
}

var _ proxy.Gate = gateAdapter{}

func (a gateAdapter) Decide(ctx context.Context, route *config.Route, id auth.Identity) (proxy.Decision, *proxy.HTTPError) {
	if !route.Require.Any() && !a.limited[route.Meter] {
		return proxy.Decision{}, nil // metered, but no plan limits it: nothing to look up
	}
	d := a.g.DecideMemo(ctx, id.Customer, route.Require, route.FailOpen, memoOf(id.Customer, id.Memo).gate(), id.At)
	pd := proxy.Decision{Plan: d.Plan, Status: d.Status, Features: d.Features}
	if d.Denial != nil {
		return pd, httpDenial(d.Denial)
	}
	if herr := a.seats.check(ctx, route, id, d); herr != nil {
		return pd, herr
	}
	if limit, ok := d.Limit(route.Meter); ok && route.Meter != "" && id.Customer != "" && !d.PeriodStart.IsZero() {
		pd.Limit = proxy.Limit{Set: true, Units: limit, PeriodStart: d.PeriodStart, PeriodEnd: d.PeriodEnd}
	}
	return pd, nil
}

// quotaAdapter puts meter.Quotas behind proxy.Quota.
type quotaAdapter struct {
	q   *meter.Quotas
	now func() time.Time
	// soon is when units other replicas hold may come back (a sync
	// interval): Retry-After while they hold some.
	soon time.Duration
}

var _ proxy.Quota = quotaAdapter{}

func (a quotaAdapter) Reserve(ctx context.Context, c proxy.Claim) (proxy.Hold, error) {
	sh, err := a.q.Reserve(ctx, meterClaim(c))
	if err == nil {
		return hold{sh}, nil
	}
	var ex *meter.QuotaExceeded // (escapes into errors.As: only on refusals)
	switch {
	case errors.As(err, &ex):
		st := quotaState(ex.Limit, 0, c.Limit.PeriodStart, ex.PeriodEnd, a.now())
		retry := st.Reset
		if ex.Held > 0 {
			retry = min(retry, a.soon)
		}
		return nil, &proxy.QuotaExceeded{Limit: ex.Limit, Used: ex.Used, State: st, RetryAfter: retry}
	default:
		return nil, err
	}
}

func (a quotaAdapter) Overrun(c proxy.Claim) (proxy.Hold, error) {
	sh, err := a.q.Overrun(meterClaim(c))
	if err != nil {
		return nil, err
	}
	return overrun{hold{sh}}, nil
}

func meterClaim(c proxy.Claim) meter.Claim {
	return meter.Claim{Customer: c.Customer, Meter: c.Meter, Units: c.Units,
		Limit: c.Limit.Units, PeriodStart: c.Limit.PeriodStart, PeriodEnd: c.Limit.PeriodEnd,
		Memo: memoOf(c.Customer, c.Memo).meter()}
}

// hold is a reservation: one pointer, so that it fits an interface value
// without an allocation.
type hold struct{ s *meter.Share }

func (h hold) Settle(reserved, used int64) { h.s.Settle(reserved, used) }

func (h hold) State() proxy.QuotaState {
	st := h.s.State()
	return proxy.QuotaState{Limit: st.Limit, Remaining: st.Remaining, Window: st.Window, Reset: st.Reset}
}

// overrun is a request forwarded with no reservation (Overrun).
type overrun struct{ hold }

func (o overrun) Settle(_, used int64) { o.s.SettleOverrun(used) }

func quotaState(limit, remaining int64, start, end, now time.Time) proxy.QuotaState {
	return proxy.QuotaState{Limit: limit, Remaining: remaining, Window: end.Sub(start), Reset: max(0, end.Sub(now))}
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
