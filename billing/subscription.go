package billing

import (
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/proxy"
)

type subscriptionAnswer struct {
	Customer           string    `json:"customer"` // "" when none is linked yet
	Subscription       string    `json:"subscription,omitempty"`
	Plan               string    `json:"plan,omitempty"`
	Status             string    `json:"status,omitempty"`
	Entitled           bool      `json:"entitled"`
	Features           []string  `json:"features"`
	CurrentPeriodStart time.Time `json:"current_period_start,omitzero"`
	CurrentPeriodEnd   time.Time `json:"current_period_end,omitzero"`
	CancelAtPeriodEnd  bool      `json:"cancel_at_period_end"`
	TrialEnd           time.Time `json:"trial_end,omitzero"`
	HadTrial           bool      `json:"had_trial"`
}

// subscription answers what the caller has now, as tollgate enforces it:
// the same state and rules as the gate (entitled means a route with
// require: {subscription: true} lets the caller in).
func (h *Handler) subscription(c *call) (any, *proxy.HTTPError) {
	a := subscriptionAnswer{Customer: c.id.Customer, Features: []string{}}
	if c.id.Customer == "" {
		return a, nil
	}
	st, err := h.state(c, c.id.Customer)
	if err != nil {
		return nil, errUnavailable.WithCause(err)
	}
	d := h.gate.Decide(c.ctx, c.id.Customer, config.Require{Subscription: true}, false)
	if d.Denial != nil && d.Denial.Code == "entitlements_unavailable" {
		return nil, errUnavailable
	}
	a.Entitled = d.Denial == nil
	if d.Features != "" {
		a.Features = strings.Split(d.Features, ",")
	}
	a.HadTrial = st.HadTrial
	if sub, ok := h.current(st); ok {
		a.Subscription, a.Status = sub.ID, sub.Status
		a.Plan, _ = h.planOf(sub.Prices)
		a.CurrentPeriodStart, a.CurrentPeriodEnd = sub.CurrentPeriodStart, sub.CurrentPeriodEnd
		a.CancelAtPeriodEnd, a.TrialEnd = sub.CancelAtPeriodEnd, sub.TrialEnd
	}
	return a, nil
}
