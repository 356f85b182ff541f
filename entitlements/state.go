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
// Operator grants (Grant) are stored beside the state, announced on the same
// feed and merged into every decision; they only ever add to what Stripe
// entitles.
//
// Seats holds plans' seat limits exactly across replicas, and SeatSync makes
// a subscription's quantity follow the seats in use.
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
	// PauseCollection is Stripe's pause_collection: while it is set, and
	// until its ResumesAt, the subscription is not entitled (its status
	// stays active: only its invoices are held back).
	PauseCollection *PauseCollection `json:"pause_collection,omitempty"`
}

// PauseCollection is a pause of a subscription's payment collection.
type PauseCollection struct {
	Behavior  string    `json:"behavior"`            // keep_as_draft | mark_uncollectible | void
	ResumesAt time.Time `json:"resumes_at,omitzero"` // zero: until resumed
}

// pausedAt reports whether collection is paused at now: Stripe resumes by
// itself at ResumesAt, so a late webhook does not keep a customer out.
func (p *PauseCollection) pausedAt(now time.Time) bool {
	return p != nil && (p.ResumesAt.IsZero() || now.Before(p.ResumesAt))
}

// FailedInvoice is the customer's newest open invoice whose payment
// failed, what an app shows in a "fix your card" banner.
type FailedInvoice struct {
	ID                 string    `json:"id"`
	AttemptCount       int64     `json:"attempt_count"`
	NextPaymentAttempt time.Time `json:"next_payment_attempt,omitzero"` // zero: Stripe retries no more
	// HostedInvoiceURL is Stripe's page to pay the invoice (https; a
	// capability URL: shown only to the customer's own callers, never
	// logged).
	HostedInvoiceURL string `json:"hosted_invoice_url,omitempty"`
	AmountDue        int64  `json:"amount_due"`
	Currency         string `json:"currency,omitempty"`
}

// Item is one subscription item: the metering of legacy usage records
// needs the item id of a price, seats (plans' seats: quantity) its
// quantity.
type Item struct {
	ID    string `json:"id"`
	Price string `json:"price"`
	// Quantity is the item's quantity; a metered price has none (0).
	Quantity int64 `json:"quantity,omitempty"`
	Metered  bool  `json:"metered,omitempty"`
}

// Ended is a subscription that Stripe listed as ended (canceled or
// incomplete_expired), which a State does not keep: it is carried, never
// stored, from a read of Stripe (or an event) to the write that drops the
// subscription, so that the write can tell how a trial ended.
type Ended struct {
	ID        string
	Status    string
	EndedAt   time.Time // when it ended; zero when Stripe did not say
	TrialEnd  time.Time
	Requested bool // the customer asked to cancel (cancellation_details.reason)
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
	// FailedInvoice is that invoice while its payment has failed (nil
	// otherwise): the 402 of a past_due customer links to it.
	FailedInvoice *FailedInvoice `json:"failed_invoice,omitempty"`
	// Deleted is set when the customer was deleted in Stripe.
	Deleted bool `json:"deleted,omitempty"`
	// UpdatedAt and Source say when and how the state was last written:
	// "webhook:evt_…", "sync", "lookup", "checkout:…".
	UpdatedAt time.Time `json:"updated_at"`
	Source    string    `json:"source"`
	// Ended lists the subscriptions the read this state comes from saw
	// ended; never stored (see Ended).
	Ended []Ended `json:"-"`
}

// SameAs reports whether two states agree on everything gating uses,
// ignoring when and how they were written.
func (s *State) SameAs(o *State) bool {
	if s.Customer != o.Customer || s.HadTrial != o.HadTrial || s.Deleted != o.Deleted ||
		s.PaymentFailures != o.PaymentFailures || !sameFailed(s.FailedInvoice, o.FailedInvoice) ||
		!slices.Equal(s.Features, o.Features) || len(s.Subscriptions) != len(o.Subscriptions) {
		return false
	}
	for i := range s.Subscriptions {
		a, b := s.Subscriptions[i], o.Subscriptions[i]
		if a.ID != b.ID || a.Status != b.Status || !slices.Equal(a.Prices, b.Prices) ||
			!a.CurrentPeriodStart.Equal(b.CurrentPeriodStart) || !a.CurrentPeriodEnd.Equal(b.CurrentPeriodEnd) ||
			a.CancelAtPeriodEnd != b.CancelAtPeriodEnd || !a.TrialEnd.Equal(b.TrialEnd) || !slices.Equal(a.Items, b.Items) ||
			a.Schedule != b.Schedule || !samePause(a.PauseCollection, b.PauseCollection) {
			return false
		}
	}
	return true
}

// sameFailed compares failed invoices, times by instant (time.Time's ==
// also compares locations).
func sameFailed(a, b *FailedInvoice) bool {
	if a == nil || b == nil {
		return a == b
	}
	x, y := *a, *b
	x.NextPaymentAttempt, y.NextPaymentAttempt = time.Time{}, time.Time{}
	return x == y && a.NextPaymentAttempt.Equal(b.NextPaymentAttempt)
}

// samePause compares pauses by instant (time.Time's == compares locations).
func samePause(a, b *PauseCollection) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Behavior == b.Behavior && a.ResumesAt.Equal(b.ResumesAt)
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
// carried over from cur: the trial history and the failed payment.
func Merge(cur, fresh *State) *State {
	out := *fresh
	if cur != nil {
		out.HadTrial = out.HadTrial || cur.HadTrial
		out.PaymentFailures, out.FailedInvoice = cur.PaymentFailures, cur.FailedInvoice
	}
	return &out
}
