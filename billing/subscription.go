package billing

import (
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
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
	// TrialDaysLeft is, while trialing, the whole days until trial_end,
	// rounded up (a trial ending in 2 hours has 1 day left; 0 once it has
	// ended); nil when not trialing.
	TrialDaysLeft *int `json:"trial_days_left"`
	HadTrial      bool `json:"had_trial"`
	// PendingChange is a plan change waiting for the period end (a
	// downgrade), nil when none.
	PendingChange *pendingChange `json:"pending_change"`
	// PauseCollection is set while payment collection, and with it
	// access, is paused; nil otherwise.
	PauseCollection *pauseView `json:"pause_collection"`
	// PaymentFailed is the open invoice whose payment failed, for a "fix
	// your card" banner; nil when none.
	PaymentFailed *paymentFailed `json:"payment_failed"`
	// Grants are the operator grants in force (tollgate grant); their
	// features and plans are already part of features and entitled.
	Grants []grantAnswer `json:"grants"`
}

type paymentFailed struct {
	Invoice      string `json:"invoice"`
	AttemptCount int64  `json:"attempt_count"`
	// NextPaymentAttempt is Stripe's next retry; nil when it will not
	// retry (the customer must pay at hosted_invoice_url).
	NextPaymentAttempt *time.Time `json:"next_payment_attempt"`
	HostedInvoiceURL   string     `json:"hosted_invoice_url"`
	AmountDue          int64      `json:"amount_due"`
	Currency           string     `json:"currency"`
}

// grantAnswer is one grant as the app sees it: what it adds and why (who
// made it is for the operators' audit, not for the customer's page).
type grantAnswer struct {
	ID       string           `json:"id"`
	Features []string         `json:"features"`
	Limits   map[string]int64 `json:"limits"`
	Plan     string           `json:"plan,omitempty"`
	Until    *time.Time       `json:"until"` // null: until revoked
	Reason   string           `json:"reason"`
}

func grantsAnswer(grants []entitlements.Grant) []grantAnswer {
	out := make([]grantAnswer, 0, len(grants))
	for _, g := range grants {
		a := grantAnswer{ID: g.ID, Features: g.Features, Limits: g.Limits, Plan: g.Plan, Reason: g.Reason}
		if a.Features == nil {
			a.Features = []string{}
		}
		if a.Limits == nil {
			a.Limits = map[string]int64{}
		}
		if !g.Until.IsZero() {
			u := g.Until.UTC()
			a.Until = &u
		}
		out = append(out, a)
	}
	return out
}

type pendingChange struct {
	Plan        string    `json:"plan"`
	EffectiveAt time.Time `json:"effective_at"`
}

// subscription answers what the caller has now, as tollgate enforces it:
// the same state and rules as the gate (entitled means a route with
// require: {subscription: true} lets the caller in).
func (h *Handler) subscription(c *call) (any, *proxy.HTTPError) {
	a := subscriptionAnswer{Customer: c.id.Customer, Features: []string{}, Grants: []grantAnswer{}}
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
	a.Grants = grantsAnswer(d.Grants)
	a.HadTrial = st.HadTrial
	a.PaymentFailed = failedPayment(st.FailedInvoice)
	if sub, ok := h.current(st); ok {
		a.Subscription, a.Status = sub.ID, sub.Status
		a.Plan, _ = h.planOf(sub.Prices)
		a.CurrentPeriodStart, a.CurrentPeriodEnd = sub.CurrentPeriodStart, sub.CurrentPeriodEnd
		a.CancelAtPeriodEnd, a.TrialEnd = sub.CancelAtPeriodEnd, sub.TrialEnd
		if sub.Status == entitlements.StatusTrialing && !sub.TrialEnd.IsZero() {
			days := trialDaysLeft(sub.TrialEnd, h.now())
			a.TrialDaysLeft = &days
		}
		if pc := sub.PauseCollection; pc != nil {
			a.PauseCollection = &pauseView{Behavior: pc.Behavior, ResumesAt: pc.ResumesAt}
		}
		if sub.Schedule != "" {
			a.PendingChange = h.pendingChange(c, sub.Schedule)
		}
	} else if a.Entitled {
		// Entitled by a granted plan alone: the plan and status the gate
		// forwards (status active).
		a.Plan, a.Status = d.Plan, d.Status
	}
	return a, nil
}

// trialDaysLeft is the whole days from now to end, rounded up, 0 once
// end has passed: "3 days left" from 2 days and 1 second on.
func trialDaysLeft(end, now time.Time) int {
	left := end.Sub(now)
	if left <= 0 {
		return 0
	}
	return int((left + 24*time.Hour - 1) / (24 * time.Hour))
}

func failedPayment(fi *entitlements.FailedInvoice) *paymentFailed {
	if fi == nil {
		return nil
	}
	p := &paymentFailed{Invoice: fi.ID, AttemptCount: fi.AttemptCount, HostedInvoiceURL: fi.HostedInvoiceURL,
		AmountDue: fi.AmountDue, Currency: fi.Currency}
	if !fi.NextPaymentAttempt.IsZero() {
		t := fi.NextPaymentAttempt.UTC()
		p.NextPaymentAttempt = &t
	}
	return p
}

// pendingChange reads the plan a subscription schedule moves to next. It
// is shown, not enforced, so a failed read leaves it out (logged) rather
// than failing the page.
func (h *Handler) pendingChange(c *call, schedule string) *pendingChange {
	pc, err := h.scheduledChange(c, schedule)
	if err != nil {
		h.log.WarnContext(c.ctx, "billing: pending plan change unknown: schedule not read", "schedule", schedule, "err", err)
	}
	return pc
}

// scheduledChange reads the plan a live subscription schedule moves to in
// its next phase; nil when it moves to none.
func (h *Handler) scheduledChange(c *call, schedule string) (*pendingChange, error) {
	p := &stripe.SubscriptionScheduleParams{}
	p.Context = c.ctx
	sched, err := h.api.SubscriptionSchedules.Get(schedule, p)
	if err != nil {
		return nil, err
	}
	if sched.Status != stripe.SubscriptionScheduleStatusActive && sched.Status != stripe.SubscriptionScheduleStatusNotStarted {
		return nil, nil
	}
	now := h.now().Unix()
	for _, ph := range sched.Phases {
		if ph.StartDate <= now {
			continue
		}
		var prices []string
		for _, it := range ph.Items {
			if it.Price != nil {
				prices = append(prices, it.Price.ID)
			}
		}
		if plan, ok := h.planOf(prices); ok {
			return &pendingChange{Plan: plan, EffectiveAt: time.Unix(ph.StartDate, 0).UTC()}, nil
		}
	}
	return nil, nil
}
