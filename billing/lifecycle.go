package billing

import (
	"fmt"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/internal/stripeapi"
	"github.com/tollgate-dev/tollgate/proxy"
)

// lifecycleAnswer is the subscription after a cancel, resume or pause.
type lifecycleAnswer struct {
	Subscription      string    `json:"subscription"`
	Status            string    `json:"status"`
	CancelAtPeriodEnd bool      `json:"cancel_at_period_end"`
	CurrentPeriodEnd  time.Time `json:"current_period_end"` // access lasts until then when canceling
	// PauseCollection is set while payment collection is paused (and
	// access with it), nil otherwise.
	PauseCollection *pauseView `json:"pause_collection"`
}

type pauseView struct {
	Behavior  string    `json:"behavior"`
	ResumesAt time.Time `json:"resumes_at,omitzero"` // zero: until resumed
}

func lifecycle(sub *stripe.Subscription) lifecycleAnswer {
	a := lifecycleAnswer{Subscription: sub.ID, Status: string(sub.Status), CancelAtPeriodEnd: sub.CancelAtPeriodEnd,
		CurrentPeriodEnd: time.Unix(sub.CurrentPeriodEnd, 0).UTC()}
	if pc := sub.PauseCollection; pc != nil && pc.Behavior != "" {
		a.PauseCollection = &pauseView{Behavior: string(pc.Behavior), ResumesAt: stripeapi.Time(pc.ResumesAt)}
	}
	return a
}

// cancel ends the subscription at the end of the period (access stays
// until then) and drops a pending plan change. Cancelling twice is fine.
func (h *Handler) cancel(c *call) (any, *proxy.HTTPError) {
	if herr := c.decode(&struct{}{}); herr != nil {
		return nil, herr
	}
	sub, herr := h.stripeSubscription(c)
	if herr != nil || sub.CancelAtPeriodEnd {
		return h.settled(c, sub, herr, nil)
	}
	if herr := h.releaseSchedule(c, sub, "cancel"); herr != nil {
		return nil, herr
	}
	p := &stripe.SubscriptionParams{CancelAtPeriodEnd: stripe.Bool(true)}
	p.Context = c.ctx
	p.SetIdempotencyKey(c.idempotencyKey("cancel"))
	sub, err := h.api.Subscriptions.Update(sub.ID, p)
	return h.settled(c, sub, nil, err)
}

// resume undoes what stops a subscription: a cancellation at period end,
// a pause of collection (both at once when both are set), or Stripe's own
// paused status (a trial that ended without a payment method).
func (h *Handler) resume(c *call) (any, *proxy.HTTPError) {
	if herr := c.decode(&struct{}{}); herr != nil {
		return nil, herr
	}
	sub, herr := h.stripeSubscription(c)
	if herr != nil {
		return nil, herr
	}
	var err error
	switch {
	case sub.Status == stripe.SubscriptionStatusPaused:
		p := &stripe.SubscriptionResumeParams{}
		p.Context = c.ctx
		p.SetIdempotencyKey(c.idempotencyKey("resume"))
		sub, err = h.api.Subscriptions.Resume(sub.ID, p)
	case sub.CancelAtPeriodEnd || paused(sub):
		sub, err = h.keep(c, sub)
	default:
		return nil, conflict("not_canceled", "The subscription is neither canceled at period end nor paused; there is nothing to resume.")
	}
	return h.settled(c, sub, nil, err)
}

// keep undoes a cancellation at period end and a pause of collection, in
// one update.
func (h *Handler) keep(c *call, sub *stripe.Subscription) (*stripe.Subscription, error) {
	p := &stripe.SubscriptionParams{}
	if sub.CancelAtPeriodEnd {
		p.CancelAtPeriodEnd = stripe.Bool(false)
	}
	if paused(sub) {
		p.AddExtra("pause_collection", "") // unset: collect again
	}
	p.Context = c.ctx
	p.SetIdempotencyKey(c.idempotencyKey("resume"))
	return h.api.Subscriptions.Update(sub.ID, p)
}

func paused(sub *stripe.Subscription) bool {
	return sub.PauseCollection != nil && sub.PauseCollection.Behavior != ""
}

type pauseRequest struct {
	// ResumesAt (Unix seconds) is when collection, and access, resume by
	// themselves; 0 pauses until subscription/resume.
	ResumesAt int64 `json:"resumes_at"`
}

// Pauses: how invoices made while paused are treated, and how far ahead
// resumes_at may lie.
const (
	// pauseBehavior voids them: the customer neither pays nor owes for
	// paused time, and nothing piles up to collect on resuming (keep_as_draft
	// would bill it all then; mark_uncollectible would record it as bad debt).
	pauseBehavior = stripe.SubscriptionPauseCollectionBehaviorVoid
	minPause      = time.Hour
	maxPause      = 365 * 24 * time.Hour
)

// pause pauses payment collection of the caller's subscription (Stripe's
// pause_collection, behavior void): while paused the customer is not
// billed and not entitled. Pausing again replaces resumes_at.
func (h *Handler) pause(c *call) (any, *proxy.HTTPError) {
	var req pauseRequest
	if herr := c.decode(&req); herr != nil {
		return nil, herr
	}
	now := h.now()
	if req.ResumesAt != 0 {
		at := time.Unix(req.ResumesAt, 0)
		if at.Before(now.Add(minPause)) || at.After(now.Add(maxPause)) {
			return nil, badRequest(fmt.Sprintf("resumes_at must be Unix seconds from %d (an hour from now) to %d (a year from now), or left out to pause until resumed; got %d.",
				now.Add(minPause).Unix(), now.Add(maxPause).Unix(), req.ResumesAt))
		}
	}
	sub, herr := h.stripeSubscription(c)
	if herr != nil {
		return nil, herr
	}
	switch {
	case sub.Status != stripe.SubscriptionStatusActive && sub.Status != stripe.SubscriptionStatusTrialing:
		return nil, conflict("not_pausable", fmt.Sprintf("Only an active or trialing subscription can be paused; this one is %s.", sub.Status))
	case sub.CancelAtPeriodEnd:
		return nil, conflict("subscription_canceling", "The subscription ends at the period end; resume it before pausing it.")
	case paused(sub) && sub.PauseCollection.Behavior == pauseBehavior && sub.PauseCollection.ResumesAt == req.ResumesAt:
		return lifecycle(sub), nil // already so
	}
	sub, err := h.pauseCollection(c, sub, req.ResumesAt)
	if err == nil {
		h.log.InfoContext(c.ctx, "billing: collection paused", "customer", c.id.Customer, "subscription", sub.ID,
			"resumes_at", req.ResumesAt)
	}
	return h.settled(c, sub, nil, err)
}

// pauseCollection pauses the subscription's collection until resumesAt
// (Unix seconds; 0: until resumed).
func (h *Handler) pauseCollection(c *call, sub *stripe.Subscription, resumesAt int64) (*stripe.Subscription, error) {
	p := &stripe.SubscriptionParams{PauseCollection: &stripe.SubscriptionPauseCollectionParams{
		Behavior: stripe.String(string(pauseBehavior))}}
	if resumesAt != 0 {
		p.PauseCollection.ResumesAt = stripe.Int64(resumesAt)
	}
	p.Context = c.ctx
	p.SetIdempotencyKey(c.idempotencyKey("pause"))
	return h.api.Subscriptions.Update(sub.ID, p)
}

// settled answers a cancel, resume or pause: the subscription as Stripe
// now has it, re-read into the store so that every replica enforces it.
func (h *Handler) settled(c *call, sub *stripe.Subscription, herr *proxy.HTTPError, err error) (any, *proxy.HTTPError) {
	if herr != nil {
		return nil, herr
	}
	if err != nil {
		return nil, stripeFailure(err)
	}
	if _, err := h.refresh(c, c.id.Customer, "billing:"+strings.TrimPrefix(c.op, "subscription/")); err != nil {
		h.log.WarnContext(c.ctx, "billing: state refresh after a subscription change failed; the webhook will bring it", "err", err)
	}
	return lifecycle(sub), nil
}
