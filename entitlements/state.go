// Package entitlements decides, from each customer's Stripe subscription
// state, whether a request may use a route: plan, status, features, grace.
//
// Customer state lives in a Store (Redis, or the embedded store) under the
// customer's hash tag. Every replica keeps a bounded in-memory cache that
// serves decisions without a network round trip; a change written by any
// replica is published and applied by every replica within a second, with a
// periodic refresh as a backstop. When the store is unreachable, decisions
// use the last known state for gating.max_staleness after the change feed
// last proved it current, then fail closed; docs/outages.md has the bounds.
// A customer seen for the first time is loaded once (single-flight) from the
// store, or from Stripe. Reconciliation (Sync) repairs any drift from Stripe.
package entitlements

import (
	"errors"
	"slices"
	"time"
)

// Subscription statuses, as Stripe names them.
const (
	StatusActive            = "active"
	StatusTrialing          = "trialing"
	StatusPastDue           = "past_due"
	StatusCanceled          = "canceled"
	StatusUnpaid            = "unpaid"
	StatusIncomplete        = "incomplete"
	StatusIncompleteExpired = "incomplete_expired"
	StatusPaused            = "paused"
)

// Errors callers branch on.
var (
	ErrNotFound        = errors.New("entitlements: customer not in store")
	ErrUnknownCustomer = errors.New("entitlements: Stripe has no such customer")
	ErrLinkConflict    = errors.New("entitlements: user already linked to another customer")
)

// Subscription is the part of a Stripe subscription that gating needs.
type Subscription struct {
	ID                 string    `json:"id"`
	Status             string    `json:"status"`
	Prices             []string  `json:"prices"`
	Items              []Item    `json:"items,omitempty"`
	CurrentPeriodStart time.Time `json:"current_period_start"`
	CurrentPeriodEnd   time.Time `json:"current_period_end"`
	CancelAtPeriodEnd  bool      `json:"cancel_at_period_end,omitempty"`
	TrialEnd           time.Time `json:"trial_end,omitzero"`
	Created            time.Time `json:"created,omitzero"`
	// Schedule is the subscription schedule attached (a plan change
	// waiting for a later phase), "" when none.
	Schedule string `json:"schedule,omitempty"`
}

// Item is one subscription item: the metering of legacy usage records
// needs the item id of a price.
type Item struct {
	ID    string `json:"id"`
	Price string `json:"price"`
}

// State is everything tollgate knows about one customer.
type State struct {
	Customer      string         `json:"customer"`
	Subscriptions []Subscription `json:"subscriptions"`
	// Features are the lookup keys of the customer's Stripe active
	// entitlements; configured plan features are added at decision time.
	Features []string `json:"features,omitempty"`
	HadTrial bool     `json:"had_trial,omitempty"`
	// PaymentFailures is the attempt count of the latest unpaid invoice;
	// 0 once an invoice is paid.
	PaymentFailures int64 `json:"payment_failures,omitempty"`
	// Deleted is set when the customer was deleted in Stripe.
	Deleted bool `json:"deleted,omitempty"`
	// UpdatedAt and Source say when and how the state was last written:
	// "webhook:evt_…", "sync", "lookup", "checkout:…".
	UpdatedAt time.Time `json:"updated_at"`
	Source    string    `json:"source"`
}

// SameAs reports whether two states agree on everything gating uses,
// ignoring when and how they were written.
func (s *State) SameAs(o *State) bool {
	if s.Customer != o.Customer || s.HadTrial != o.HadTrial || s.Deleted != o.Deleted ||
		s.PaymentFailures != o.PaymentFailures || !slices.Equal(s.Features, o.Features) ||
		len(s.Subscriptions) != len(o.Subscriptions) {
		return false
	}
	for i := range s.Subscriptions {
		a, b := s.Subscriptions[i], o.Subscriptions[i]
		if a.ID != b.ID || a.Status != b.Status || !slices.Equal(a.Prices, b.Prices) ||
			!a.CurrentPeriodStart.Equal(b.CurrentPeriodStart) || !a.CurrentPeriodEnd.Equal(b.CurrentPeriodEnd) ||
			a.CancelAtPeriodEnd != b.CancelAtPeriodEnd || !a.TrialEnd.Equal(b.TrialEnd) || !slices.Equal(a.Items, b.Items) ||
			a.Schedule != b.Schedule {
			return false
		}
	}
	return true
}

// CurrentPeriod returns the billing period of the customer's entitled
// subscription that ends last (for quotas), and false when none is.
func (s *State) CurrentPeriod() (start, end time.Time, ok bool) {
	for _, sub := range s.Subscriptions {
		if sub.CurrentPeriodEnd.After(end) && sub.Status != StatusCanceled && sub.Status != StatusIncompleteExpired {
			start, end, ok = sub.CurrentPeriodStart, sub.CurrentPeriodEnd, true
		}
	}
	return start, end, ok
}

// ItemForPrice returns the subscription item id that bills a price.
func (s *State) ItemForPrice(price string) (string, bool) {
	for _, sub := range s.Subscriptions {
		for _, it := range sub.Items {
			if it.Price == price {
				return it.ID, true
			}
		}
	}
	return "", false
}

// Merge returns fresh (Stripe's view now) with what only tollgate records
// carried over from cur: the trial history and the payment failure count.
func Merge(cur, fresh *State) *State {
	out := *fresh
	if cur != nil {
		out.HadTrial = out.HadTrial || cur.HadTrial
		out.PaymentFailures = cur.PaymentFailures
	}
	return &out
}
