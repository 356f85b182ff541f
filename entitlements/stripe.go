package entitlements

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"github.com/tollgate-dev/tollgate/internal/stripeapi"
)

// StripeSource reads customer state from Stripe through stripe-go, at the
// pinned API version, so state always reflects Stripe now and never an
// event's possibly stale payload.
type StripeSource struct {
	api *client.API
}

var _ Source = (*StripeSource)(nil)

// NewStripeSource returns a Source on a stripe-go client.
func NewStripeSource(api *client.API) *StripeSource { return &StripeSource{api: api} }

// Fetch implements Source: the customer, every subscription (any status)
// and the active entitlements.
func (s *StripeSource) Fetch(ctx context.Context, customer string) (*State, error) {
	cp := &stripe.CustomerParams{}
	cp.Context = ctx
	c, err := s.api.Customers.Get(customer, cp)
	if stripeapi.IsMissing(err) {
		return nil, ErrUnknownCustomer
	}
	if err != nil {
		return nil, fmt.Errorf("get customer: %w", err)
	}
	st := &State{Customer: customer}
	if c.Deleted {
		st.Deleted = true
		return st, nil
	}
	lp := &stripe.SubscriptionListParams{Customer: stripe.String(customer), Status: stripe.String("all")}
	lp.Context = ctx
	it := s.api.Subscriptions.List(lp)
	for it.Next() {
		PutSubscription(st, it.Subscription())
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list subscriptions: %w", err)
	}
	if st.Features, err = s.activeEntitlements(ctx, customer); err != nil {
		return nil, err
	}
	return st, nil
}

func (s *StripeSource) activeEntitlements(ctx context.Context, customer string) ([]string, error) {
	p := &stripe.EntitlementsActiveEntitlementListParams{Customer: stripe.String(customer)}
	p.Context = ctx
	it := s.api.EntitlementsActiveEntitlements.List(p)
	var keys []string
	for it.Next() {
		if k := it.EntitlementsActiveEntitlement().LookupKey; k != "" {
			keys = append(keys, k)
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list active entitlements: %w", err)
	}
	slices.Sort(keys)
	return slices.Compact(keys), nil
}

// PutSubscription puts one Stripe subscription into a state, replacing a
// subscription with the same id; an ended one is removed and only counts
// towards HadTrial. Subscriptions stay ordered by id, so that equal states
// compare equal.
func PutSubscription(st *State, sub *stripe.Subscription) {
	if sub.TrialStart != 0 || sub.TrialEnd != 0 {
		st.HadTrial = true
	}
	st.Subscriptions = slices.DeleteFunc(st.Subscriptions, func(s Subscription) bool { return s.ID == sub.ID })
	switch string(sub.Status) {
	case StatusCanceled, StatusIncompleteExpired:
		st.Ended = append(st.Ended, endedOf(sub))
		return
	}
	s := Subscription{
		ID:                 sub.ID,
		Status:             string(sub.Status),
		CurrentPeriodStart: stripeapi.Time(sub.CurrentPeriodStart),
		CurrentPeriodEnd:   stripeapi.Time(sub.CurrentPeriodEnd),
		CancelAtPeriodEnd:  sub.CancelAtPeriodEnd,
		TrialEnd:           stripeapi.Time(sub.TrialEnd),
		Created:            stripeapi.Time(sub.Created),
	}
	if sub.Schedule != nil {
		s.Schedule = sub.Schedule.ID
	}
	if pc := sub.PauseCollection; pc != nil && pc.Behavior != "" {
		s.PauseCollection = &PauseCollection{Behavior: string(pc.Behavior), ResumesAt: stripeapi.Time(pc.ResumesAt)}
	}
	if sub.Items != nil {
		for _, it := range sub.Items.Data {
			if it.Price != nil {
				s.Prices = append(s.Prices, it.Price.ID)
				s.Items = append(s.Items, Item{ID: it.ID, Price: it.Price.ID, Quantity: it.Quantity, Metered: metered(it.Price)})
			}
		}
	}
	slices.Sort(s.Prices)
	slices.SortFunc(s.Items, func(a, b Item) int { return strings.Compare(a.ID, b.ID) })
	st.Subscriptions = append(st.Subscriptions, s)
	slices.SortFunc(st.Subscriptions, func(a, b Subscription) int { return strings.Compare(a.ID, b.ID) })
}

// metered reports whether a price bills usage (it has no quantity).
func metered(p *stripe.Price) bool {
	return p.Recurring != nil && p.Recurring.UsageType == stripe.PriceRecurringUsageTypeMetered
}

// endedOf is what a trial's end is told from: when the subscription
// ended, its trial's end, and whether the customer asked for it.
func endedOf(sub *stripe.Subscription) Ended {
	e := Ended{ID: sub.ID, Status: string(sub.Status), TrialEnd: stripeapi.Time(sub.TrialEnd)}
	switch {
	case sub.EndedAt != 0:
		e.EndedAt = stripeapi.Time(sub.EndedAt)
	case sub.CanceledAt != 0:
		e.EndedAt = stripeapi.Time(sub.CanceledAt)
	}
	if cd := sub.CancellationDetails; cd != nil {
		e.Requested = cd.Reason == stripe.SubscriptionCancellationDetailsReasonCancellationRequested
	}
	return e
}
