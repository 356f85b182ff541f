package billing

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/proxy"
)

type changeRequest struct {
	Plan     string `json:"plan"`
	Interval string `json:"interval"` // default: the current plan's interval
	// ProrationDate (Unix seconds) is the preview's, so that the change
	// bills what the customer was shown; default now.
	ProrationDate int64 `json:"proration_date"`
}

// When a plan change takes effect.
const (
	appliesNow       = "now"
	appliesPeriodEnd = "period_end"
)

// plannedChange is a plan change worked out against the subscription as
// Stripe has it now.
type plannedChange struct {
	sub     *stripe.Subscription
	target  offer
	items   []*stripe.SubscriptionItemsParams // the update: plan items replaced, added or deleted
	keep    []*stripe.SubscriptionItem        // items outside any plan, left as they are
	upgrade bool                              // applies now; a downgrade waits for the period end
	date    int64                             // proration date
	// withdraw is the pending downgrade that choosing the current plan
	// withdraws (nil: a change of plan).
	withdraw *pendingChange
}

func (p *plannedChange) applies() string {
	if p.upgrade || p.withdraw != nil {
		return appliesNow
	}
	return appliesPeriodEnd
}

func (p *plannedChange) effectiveAt() time.Time {
	if p.upgrade || p.withdraw != nil {
		return time.Unix(p.date, 0).UTC()
	}
	return time.Unix(p.sub.CurrentPeriodEnd, 0).UTC()
}

// planRequest reads a preview or change request and works the change out.
func (h *Handler) planRequest(c *call) (*plannedChange, *proxy.HTTPError) {
	var req changeRequest
	if herr := c.decode(&req); herr != nil {
		return nil, herr
	}
	pc, herr := h.plan(c, req)
	if herr != nil {
		return nil, herr
	}
	if pc.sub.CancelAtPeriodEnd {
		// A change would renew a subscription the customer chose to end.
		return nil, errCanceling
	}
	return pc, nil
}

// plan works out a change of the caller's subscription to req.Plan. An
// upgrade is a change to prices that cost at least as much per day (of
// the licensed prices; metered ones depend on usage).
func (h *Handler) plan(c *call, req changeRequest) (*plannedChange, *proxy.HTTPError) {
	sub, herr := h.stripeSubscription(c)
	if herr != nil {
		return nil, herr
	}
	pc := &plannedChange{sub: sub}
	var old []*stripe.SubscriptionItem
	for _, it := range sub.Items.Data {
		if _, ok := h.plans.PlanOf(it.Price.ID); ok {
			old = append(old, it)
		} else {
			pc.keep = append(pc.keep, it)
		}
	}
	interval := req.Interval
	if interval == "" && len(old) > 0 && old[0].Price.Recurring != nil {
		interval = string(old[0].Price.Recurring.Interval)
	}
	if pc.target, herr = h.offer(c.ctx, req.Plan, interval); herr != nil {
		return nil, herr
	}
	if !pc.target.recurring() {
		return nil, badRequest(fmt.Sprintf("Plan %q is a one-time purchase; buy it with checkout.", req.Plan))
	}
	now := h.now().Unix()
	pc.date = now
	if slices.Equal(priceIDs(old), priceIDsOf(pc.target.prices)) {
		return h.planWithdrawal(c, pc, req)
	}
	oldPrices, qty := make([]*stripe.Price, len(old)), make([]int64, len(old))
	for i, it := range old {
		oldPrices[i], qty[i] = it.Price, it.Quantity
	}
	oldRate, oldCur, ok1 := dailyRate(oldPrices, qty)
	newRate, newCur, ok2 := dailyRate(pc.target.prices, nil)
	if !ok1 || !ok2 || (oldCur != "" && newCur != "" && oldCur != newCur) {
		return nil, conflict("currency_mismatch", "The new plan is priced in another currency than the subscription; change it in the portal or start a new checkout.")
	}
	pc.upgrade = newRate >= oldRate
	pc.items = itemChanges(old, pc.target.prices)
	if req.ProrationDate != 0 {
		if req.ProrationDate > now || req.ProrationDate < sub.CurrentPeriodStart {
			return nil, badRequest("proration_date must lie in the current billing period and not in the future; use the preview's.")
		}
		pc.date = req.ProrationDate
	}
	return pc, nil
}

// planWithdrawal handles a change to the plan the subscription is on: it
// withdraws a pending downgrade, if there is one; otherwise there is
// nothing to change.
func (h *Handler) planWithdrawal(c *call, pc *plannedChange, req changeRequest) (*plannedChange, *proxy.HTTPError) {
	if s := pc.sub.Schedule; s != nil && s.ID != "" {
		w, err := h.scheduledChange(c, s.ID)
		if err != nil {
			return nil, stripeFailure(err)
		}
		if w != nil {
			pc.withdraw = w
			return pc, nil
		}
	}
	return nil, conflict("same_plan", fmt.Sprintf("The subscription is already on plan %q per %s.", req.Plan, pc.target.interval))
}

// stripeSubscription reads the caller's current subscription from Stripe.
func (h *Handler) stripeSubscription(c *call) (*stripe.Subscription, *proxy.HTTPError) {
	customer, herr := c.customer()
	if herr != nil {
		return nil, herr
	}
	st, err := h.state(c, customer)
	if err != nil {
		return nil, errUnavailable.WithCause(err)
	}
	cur, ok := h.current(st)
	if !ok {
		return nil, errNoSubscription
	}
	p := &stripe.SubscriptionParams{}
	p.Context = c.ctx
	sub, err := h.api.Subscriptions.Get(cur.ID, p)
	if err != nil {
		return nil, stripeFailure(err)
	}
	if sub.Items == nil {
		sub.Items = &stripe.SubscriptionItemList{}
	}
	return sub, nil
}

// itemChanges replaces the old plan items' prices in order (which keeps
// item ids, so Stripe prorates item by item), deletes old items left over
// and adds new prices left over.
func itemChanges(old []*stripe.SubscriptionItem, prices []*stripe.Price) []*stripe.SubscriptionItemsParams {
	var out []*stripe.SubscriptionItemsParams
	for i := 0; i < max(len(old), len(prices)); i++ {
		switch {
		case i >= len(prices):
			out = append(out, &stripe.SubscriptionItemsParams{ID: stripe.String(old[i].ID), Deleted: stripe.Bool(true)})
		case i >= len(old):
			out = append(out, newItem(prices[i]))
		default:
			it := &stripe.SubscriptionItemsParams{ID: stripe.String(old[i].ID), Price: stripe.String(prices[i].ID)}
			if !metered(prices[i]) && metered(old[i].Price) {
				it.Quantity = stripe.Int64(1)
			}
			out = append(out, it)
		}
	}
	return out
}

func newItem(p *stripe.Price) *stripe.SubscriptionItemsParams {
	it := &stripe.SubscriptionItemsParams{Price: stripe.String(p.ID)}
	if !metered(p) {
		it.Quantity = stripe.Int64(1)
	}
	return it
}

func priceIDs(items []*stripe.SubscriptionItem) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.Price.ID
	}
	slices.Sort(out)
	return out
}

func priceIDsOf(prices []*stripe.Price) []string {
	out := make([]string, len(prices))
	for i, p := range prices {
		out[i] = p.ID
	}
	slices.Sort(out)
	return out
}

// target is what a plan change moves to, and when; preview and change
// both answer it.
type target struct {
	Plan        string    `json:"plan"`
	Interval    string    `json:"interval"`
	Applies     string    `json:"applies"` // now | period_end
	EffectiveAt time.Time `json:"effective_at"`
}

func (p *plannedChange) describe() target {
	return target{Plan: p.target.plan, Interval: p.target.interval, Applies: p.applies(), EffectiveAt: p.effectiveAt()}
}

type changeAnswer struct {
	target
	Status string `json:"status"`
	// Charged is the invoice the change billed at once (an upgrade with
	// always_invoice: the preview's due_now), nil when it billed nothing.
	Charged *chargedInvoice `json:"charged"`
	// Withdrawn is the pending downgrade the change withdrew.
	Withdrawn *pendingChange `json:"withdrawn,omitempty"`
}

type chargedInvoice struct {
	Invoice          string `json:"invoice"`
	Amount           int64  `json:"amount"` // amount_paid, in the currency's smallest unit
	Currency         string `json:"currency"`
	HostedInvoiceURL string `json:"hosted_invoice_url"`
}

// change moves the caller's subscription to another plan: an upgrade now,
// prorated as billing.upgrade_proration says, and only if its payment
// succeeds (payment_behavior pending_if_incomplete); a downgrade at the
// end of the period, through a subscription schedule, so the customer
// keeps what they paid for. Choosing the current plan while a downgrade
// is pending withdraws the downgrade.
func (h *Handler) change(c *call) (any, *proxy.HTTPError) {
	pc, herr := h.planRequest(c)
	if herr != nil {
		return nil, herr
	}
	var charged *chargedInvoice
	switch {
	case pc.withdraw != nil:
		herr = h.withdraw(c, pc)
	case pc.upgrade:
		charged, herr = h.upgrade(c, pc)
	default:
		herr = h.downgrade(c, pc)
	}
	if herr != nil {
		return nil, herr
	}
	h.log.InfoContext(c.ctx, "billing: plan changed", "customer", c.id.Customer, "subscription", pc.sub.ID,
		"plan", pc.target.plan, "interval", pc.target.interval, "applies", pc.applies(), "withdrawn", pc.withdraw != nil)
	return changeAnswer{target: pc.describe(), Status: string(pc.sub.Status), Charged: charged, Withdrawn: pc.withdraw}, nil
}

// withdraw releases the schedule that holds a pending downgrade: the
// subscription stays as it is now, and renews so.
func (h *Handler) withdraw(c *call, pc *plannedChange) *proxy.HTTPError {
	if herr := h.releaseSchedule(c, pc.sub, "withdraw"); herr != nil {
		return herr
	}
	if _, err := h.refresh(c, c.id.Customer, "billing:change"); err != nil {
		h.log.WarnContext(c.ctx, "billing: state refresh after withdrawing a downgrade failed; the webhook will bring it", "err", err)
	}
	return nil
}

// upgrade applies the new prices now; it returns the invoice that charged
// the prorations at once, if one did.
func (h *Handler) upgrade(c *call, pc *plannedChange) (*chargedInvoice, *proxy.HTTPError) {
	if herr := h.releaseSchedule(c, pc.sub, "change"); herr != nil {
		return nil, herr // a pending downgrade is superseded by the upgrade
	}
	var before string
	if pc.sub.LatestInvoice != nil {
		before = pc.sub.LatestInvoice.ID
	}
	p := &stripe.SubscriptionParams{
		Items:             pc.items,
		ProrationBehavior: stripe.String(h.cfg.Billing.UpgradeProration),
		ProrationDate:     stripe.Int64(pc.date),
		PaymentBehavior:   stripe.String("pending_if_incomplete"),
	}
	p.Context = c.ctx
	p.AddExpand("latest_invoice")
	p.SetIdempotencyKey(c.idempotencyKey("change"))
	sub, err := h.api.Subscriptions.Update(pc.sub.ID, p)
	if err != nil {
		return nil, stripeFailure(err)
	}
	pc.sub = sub
	if _, err := h.refresh(c, c.id.Customer, "billing:change"); err != nil {
		h.log.WarnContext(c.ctx, "billing: state refresh after a plan change failed; the webhook will bring it", "err", err)
	}
	inv := sub.LatestInvoice
	if sub.PendingUpdate != nil {
		e := &proxy.HTTPError{Status: http.StatusPaymentRequired, Code: "payment_failed",
			Msg: "The upgrade waits for its payment, which did not succeed; the current plan stays until it does."}
		if inv != nil && inv.HostedInvoiceURL != "" {
			e.Extra = map[string]any{"invoice_url": inv.HostedInvoiceURL}
		}
		return nil, e
	}
	if inv == nil || inv.ID == "" || inv.ID == before {
		return nil, nil // nothing invoiced at once (create_prorations)
	}
	return &chargedInvoice{Invoice: inv.ID, Amount: inv.AmountPaid, Currency: string(inv.Currency),
		HostedInvoiceURL: inv.HostedInvoiceURL}, nil
}

// downgrade schedules the new prices from the end of the current period:
// phase 1 is the subscription as it is until then, phase 2 the new plan,
// after which the schedule releases the subscription.
func (h *Handler) downgrade(c *call, pc *plannedChange) *proxy.HTTPError {
	sched, herr := h.schedule(c, pc.sub)
	if herr != nil {
		return herr
	}
	start := pc.sub.CurrentPeriodStart
	if sched.CurrentPhase != nil {
		start = sched.CurrentPhase.StartDate
	} else if len(sched.Phases) > 0 {
		start = sched.Phases[0].StartDate
	}
	var now, next []*stripe.SubscriptionSchedulePhaseItemParams
	for _, it := range pc.sub.Items.Data {
		now = append(now, phaseItem(it.Price, it.Quantity))
	}
	for _, it := range pc.keep {
		next = append(next, phaseItem(it.Price, it.Quantity))
	}
	for _, p := range pc.target.prices {
		next = append(next, phaseItem(p, 1))
	}
	p := &stripe.SubscriptionScheduleParams{
		EndBehavior: stripe.String(string(stripe.SubscriptionScheduleEndBehaviorRelease)),
		Phases: []*stripe.SubscriptionSchedulePhaseParams{
			{Items: now, StartDate: stripe.Int64(start), EndDate: stripe.Int64(pc.sub.CurrentPeriodEnd),
				ProrationBehavior: stripe.String("none")},
			{Items: next, Iterations: stripe.Int64(1), ProrationBehavior: stripe.String("none")},
		},
	}
	p.Context = c.ctx
	p.SetIdempotencyKey(c.idempotencyKey("change-phases"))
	if _, err := h.api.SubscriptionSchedules.Update(sched.ID, p); err != nil {
		return stripeFailure(err)
	}
	// Access does not change until the period end; the state learns of
	// the schedule, so GET subscription can show the pending change.
	if _, err := h.refresh(c, c.id.Customer, "billing:change"); err != nil {
		h.log.WarnContext(c.ctx, "billing: state refresh after scheduling a downgrade failed; the webhook will bring it", "err", err)
	}
	return nil
}

func phaseItem(p *stripe.Price, quantity int64) *stripe.SubscriptionSchedulePhaseItemParams {
	it := &stripe.SubscriptionSchedulePhaseItemParams{Price: stripe.String(p.ID)}
	if !metered(p) {
		it.Quantity = stripe.Int64(max(quantity, 1))
	}
	return it
}

// schedule returns the subscription's schedule, creating one from the
// subscription when it has none.
func (h *Handler) schedule(c *call, sub *stripe.Subscription) (*stripe.SubscriptionSchedule, *proxy.HTTPError) {
	if sub.Schedule != nil && sub.Schedule.ID != "" {
		p := &stripe.SubscriptionScheduleParams{}
		p.Context = c.ctx
		s, err := h.api.SubscriptionSchedules.Get(sub.Schedule.ID, p)
		if err != nil {
			return nil, stripeFailure(err)
		}
		return s, nil
	}
	p := &stripe.SubscriptionScheduleParams{FromSubscription: stripe.String(sub.ID)}
	p.Context = c.ctx
	p.SetIdempotencyKey(c.idempotencyKey("change-schedule"))
	s, err := h.api.SubscriptionSchedules.New(p)
	if err != nil {
		return nil, stripeFailure(err)
	}
	return s, nil
}

// releaseSchedule detaches a pending plan change (a schedule) from the
// subscription, keeping the subscription as it is now.
func (h *Handler) releaseSchedule(c *call, sub *stripe.Subscription, op string) *proxy.HTTPError {
	if sub.Schedule == nil || sub.Schedule.ID == "" {
		return nil
	}
	p := &stripe.SubscriptionScheduleReleaseParams{}
	p.Context = c.ctx
	p.SetIdempotencyKey(c.idempotencyKey(op + "-release"))
	if _, err := h.api.SubscriptionSchedules.Release(sub.Schedule.ID, p); err != nil {
		return stripeFailure(err)
	}
	sub.Schedule = nil
	return nil
}
