package entitlements

import (
	"context"
	"slices"
)

// How a trial ended: the result label of tollgate_trial_conversions_total.
const (
	TrialConverted = "converted"
	TrialCanceled  = "canceled"
	TrialExpired   = "expired"
)

// TrialEnd is one trial that a state change ended.
type TrialEnd struct {
	Subscription, Plan, Result string
}

// TrialEnds lists the trials that ended between two stored states of a
// customer: every subscription trialing before and not after, told apart
// as
//
//   - converted: it is active now (the trial ended with a way to pay, or
//     the customer ended it early by paying);
//   - canceled: it ended because the customer asked (cancellation
//     requested, or cancel_at_period_end set during the trial), or before
//     its trial's end, or with the customer (deleted in Stripe);
//   - expired: the trial ran out unpaid: paused (no payment method),
//     past_due, unpaid or incomplete (its first invoice was not paid),
//     incomplete_expired, or canceled by Stripe at or after the trial's
//     end (trial_settings.end_behavior missing_payment_method: cancel).
//
// Only subscriptions holding a configured plan's price count; the plan is
// the first such plan by name. A state change is stored once (the
// store's compare-and-set), so each trial's end is seen by exactly one
// write.
func (p *Plans) TrialEnds(before, after *State) []TrialEnd {
	if before == nil {
		return nil
	}
	var out []TrialEnd
	for _, b := range before.Subscriptions {
		if b.Status != StatusTrialing {
			continue
		}
		plan := p.firstPlan(b.Prices)
		if plan == "" {
			continue
		}
		if r := trialResult(b, after); r != "" {
			out = append(out, TrialEnd{Subscription: b.ID, Plan: plan, Result: r})
		}
	}
	return out
}

func (p *Plans) firstPlan(prices []string) string {
	var plans []string
	for _, price := range prices {
		if name, ok := p.byPrice[price]; ok {
			plans = append(plans, name)
		}
	}
	if len(plans) == 0 {
		return ""
	}
	return slices.Min(plans)
}

// trialResult is how the trialing subscription b stands in after: "" while
// it is still trialing.
func trialResult(b Subscription, after *State) string {
	if after == nil || after.Deleted {
		return TrialCanceled
	}
	for _, a := range after.Subscriptions {
		if a.ID != b.ID {
			continue
		}
		switch a.Status {
		case StatusTrialing:
			return ""
		case StatusActive:
			return TrialConverted
		case StatusCanceled:
			return endedResult(b, Ended{ID: a.ID, Status: a.Status})
		}
		return TrialExpired // paused, past_due, unpaid, incomplete
	}
	for _, e := range after.Ended {
		if e.ID == b.ID {
			return endedResult(b, e)
		}
	}
	return TrialCanceled // gone from Stripe altogether
}

// endedResult tells an ended trial's end: the trial's end as Stripe has it
// now (it moves when a trial is ended early) against when it ended.
func endedResult(b Subscription, e Ended) string {
	trialEnd := e.TrialEnd
	if trialEnd.IsZero() {
		trialEnd = b.TrialEnd
	}
	switch {
	case e.Status == StatusIncompleteExpired:
		return TrialExpired
	case e.Requested || b.CancelAtPeriodEnd:
		return TrialCanceled
	case !e.EndedAt.IsZero() && !trialEnd.IsZero() && !e.EndedAt.Before(trialEnd):
		return TrialExpired
	}
	return TrialCanceled
}

// Observe wraps a Store so that fn sees every state change it commits,
// with the state before and after it, once per committed write (an
// Update whose fn ran several times because another writer won calls fn
// with the write that was stored). fn runs on the writer's goroutine and
// must be quick.
func Observe(s Store, fn func(before, after *State)) Store {
	return observed{Store: s, fn: fn}
}

type observed struct {
	Store
	fn func(before, after *State)
}

func (o observed) Update(ctx context.Context, customer string, f func(cur *State) (*State, error)) error {
	var before, after *State
	err := o.Store.Update(ctx, customer, func(cur *State) (*State, error) {
		next, err := f(cur)
		before, after = cur, next
		return next, err
	})
	if err == nil && !(after == before && before != nil) {
		o.fn(before, after)
	}
	return err
}
