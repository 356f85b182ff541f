package billing

import (
	"errors"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/proxy"
)

type checkoutRequest struct {
	Plan     string `json:"plan"`
	Interval string `json:"interval"` // month, year, ...; optional when the plan has one
}

type sessionAnswer struct {
	ID  string `json:"id"`
	URL string `json:"url"`
}

// checkout starts a Stripe Checkout Session for a plan: subscription mode
// for recurring prices (with billing.trial_days for a customer who never
// had a trial), payment mode for one-time prices. The session is recorded
// as the caller's in Redis and carries the caller's user id as
// metadata.user_id (which only a secret-key call can set) and, for the
// app's own reading, client_reference_id; the checkout.session.completed
// webhook links the user to the customer from the first two, never from
// client_reference_id alone.
func (h *Handler) checkout(c *call) (any, *proxy.HTTPError) {
	var req checkoutRequest
	if herr := c.decode(&req); herr != nil {
		return nil, herr
	}
	o, herr := h.offer(c.ctx, req.Plan, req.Interval)
	if herr != nil {
		return nil, herr
	}
	var st *entitlements.State
	if c.id.Customer != "" {
		var err error
		if st, err = h.state(c, c.id.Customer); err != nil {
			return nil, errUnavailable.WithCause(err)
		}
		if st.Deleted {
			// Stripe would refuse the customer; a new one would not be
			// linked (a user's first link stays): an operator must act.
			return nil, conflict("customer_deleted", "The billing account linked to this user was deleted; contact support.")
		}
		if sub, ok := h.current(st); ok && o.recurring() {
			return nil, conflict("already_subscribed", "This account already has a subscription ("+sub.Status+
				"); change its plan with subscription/change, or manage it in the portal.")
		}
	}
	prev, again, herr := h.reuseCheckout(c, o)
	if herr != nil {
		return nil, herr
	}
	if again != nil {
		return *again, nil // another tab or a retried click: the same session
	}
	user := c.id.User
	p := &stripe.CheckoutSessionParams{
		SuccessURL:        stripe.String(h.cfg.Billing.SuccessURL),
		CancelURL:         stripe.String(h.cfg.Billing.CancelURL),
		ClientReferenceID: stripe.String(user),
	}
	p.Context = c.ctx
	p.AddMetadata("user_id", user)
	for _, price := range o.prices {
		li := &stripe.CheckoutSessionLineItemParams{Price: stripe.String(price.ID)}
		if !metered(price) {
			li.Quantity = stripe.Int64(1)
		}
		p.LineItems = append(p.LineItems, li)
	}
	if c.id.Customer != "" {
		p.Customer = stripe.String(c.id.Customer)
	}
	if o.recurring() {
		p.Mode = stripe.String(string(stripe.CheckoutSessionModeSubscription))
		p.SubscriptionData = &stripe.CheckoutSessionSubscriptionDataParams{Metadata: map[string]string{"user_id": user}}
		if days := h.cfg.Billing.TrialDays; days > 0 && (st == nil || !st.HadTrial) {
			p.SubscriptionData.TrialPeriodDays = stripe.Int64(int64(days))
		}
	} else {
		p.Mode = stripe.String(string(stripe.CheckoutSessionModePayment))
		if c.id.Customer == "" {
			// Without it a guest payment has no customer to link the user to.
			p.CustomerCreation = stripe.String(string(stripe.CheckoutSessionCustomerCreationAlways))
		}
	}
	p.SetIdempotencyKey(c.idempotencyKey("checkout"))
	s, err := h.api.CheckoutSessions.New(p)
	if err != nil {
		return nil, stripeFailure(err)
	}
	if herr := h.recordCheckout(c, prev, s.ID, o); herr != nil {
		return nil, herr
	}
	h.log.InfoContext(c.ctx, "billing: checkout started", "user", user, "customer", c.id.Customer,
		"plan", o.plan, "interval", o.interval, "session", s.ID)
	return sessionAnswer{ID: s.ID, URL: s.URL}, nil
}

// recordCheckout makes the new session the user's one. If another request
// recorded a session in the meantime, the new one is expired again, so
// that two concurrent clicks cannot both be paid.
func (h *Handler) recordCheckout(c *call, prev, session string, o offer) *proxy.HTTPError {
	if h.checkouts == nil {
		return nil
	}
	// The owner first: a session that cannot be traced to its user is
	// expired below rather than handed out.
	err := h.checkouts.Own(c.ctx, session, c.id.User, ownerTTL)
	ok := false
	if err == nil {
		ok, err = h.checkouts.Record(c.ctx, c.id.User, prev, session, offerKey(o), checkoutTTL)
	}
	if err == nil && ok {
		return nil
	}
	ep := &stripe.CheckoutSessionExpireParams{}
	ep.Context = c.ctx
	if _, xerr := h.api.CheckoutSessions.Expire(session, ep); xerr != nil {
		h.log.ErrorContext(c.ctx, "billing: a checkout session that could not be recorded could not be expired either",
			"session", session, "err", xerr)
	}
	if err != nil {
		return errUnavailable.WithCause(err)
	}
	return conflict("checkout_in_progress", "Another checkout of this account started at the same moment; try again.")
}

// portal opens a Stripe customer portal session for the caller.
func (h *Handler) portal(c *call) (any, *proxy.HTTPError) {
	if herr := c.decode(&struct{}{}); herr != nil {
		return nil, herr
	}
	customer, herr := c.customer()
	if herr != nil {
		return nil, herr
	}
	p := &stripe.BillingPortalSessionParams{Customer: stripe.String(customer),
		ReturnURL: stripe.String(h.cfg.Billing.ReturnURL)}
	p.Context = c.ctx
	p.SetIdempotencyKey(c.idempotencyKey("portal"))
	s, err := h.api.BillingPortalSessions.New(p)
	if err != nil {
		return nil, stripeFailure(err)
	}
	return sessionAnswer{ID: s.ID, URL: s.URL}, nil
}

// state returns the customer's state: the store's, or, when the store has
// none yet, Stripe's (written to the store for every replica).
func (h *Handler) state(c *call, customer string) (*entitlements.State, error) {
	st, err := h.store.Get(c.ctx, customer)
	if errors.Is(err, entitlements.ErrNotFound) {
		return h.refresh(c, customer, "billing:lookup")
	}
	return st, err
}

// refresh re-reads the customer from Stripe after a change and writes it
// to the store; this replica enforces it at once, the others within 1 s.
func (h *Handler) refresh(c *call, customer, source string) (*entitlements.State, error) {
	st, err := entitlements.Refetch(c.ctx, h.store, h.source, customer, source, h.now(), nil)
	if err != nil {
		return nil, err
	}
	h.gate.Apply(st)
	return st, nil
}

// statusRank orders subscription statuses by how current they are, for
// picking the one subscription the API acts on.
var statusRank = map[string]int{
	entitlements.StatusActive: 6, entitlements.StatusTrialing: 5, entitlements.StatusPastDue: 4,
	entitlements.StatusUnpaid: 3, entitlements.StatusPaused: 2, entitlements.StatusIncomplete: 1,
}

// current returns the subscription the billing API acts on: of those that
// hold a configured plan's price, the one in the most current status,
// then the one whose period ends last.
func (h *Handler) current(st *entitlements.State) (entitlements.Subscription, bool) {
	var best entitlements.Subscription
	found := false
	if st == nil || st.Deleted {
		return best, false
	}
	for _, s := range st.Subscriptions {
		if _, ok := h.planOf(s.Prices); !ok || statusRank[s.Status] == 0 {
			continue
		}
		if !found || statusRank[s.Status] > statusRank[best.Status] ||
			(statusRank[s.Status] == statusRank[best.Status] && s.CurrentPeriodEnd.After(best.CurrentPeriodEnd)) {
			best, found = s, true
		}
	}
	return best, found
}

// planOf names the configured plan of a subscription's prices.
func (h *Handler) planOf(prices []string) (string, bool) {
	for _, p := range prices {
		if name, ok := h.plans.PlanOf(p); ok {
			return name, true
		}
	}
	return "", false
}
