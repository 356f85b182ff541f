package webhook

import (
	"context"
	"fmt"
	"strings"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/internal/stripeapi"
)

// Stripe is what processing reads from Stripe, always as Stripe has it
// now, never from an event's payload; *StripeAPI is one.
type Stripe interface {
	// Fetch returns the customer's whole state (entitlements.Source).
	entitlements.Source
	// Checkout returns what a completed Checkout Session says about its
	// customer, or ErrNotFound.
	Checkout(ctx context.Context, session string) (*Checkout, error)
	// FailedInvoice returns the customer's newest open (unpaid) invoice
	// if its payment failed (attempt_count > 0), nil otherwise.
	FailedInvoice(ctx context.Context, customer string) (*entitlements.FailedInvoice, error)
}

// Checkout is the part of a Checkout Session tollgate records.
type Checkout struct {
	Customer string // "" for a checkout that created no customer
	CheckoutUsers
	// Trial is set when the subscription the checkout created has a trial.
	Trial bool
}

// CheckoutUsers are the user ids a Checkout Session carries. Only MetaUser
// can link a user (see linker).
type CheckoutUsers struct {
	// Reference is client_reference_id: the payer can choose it on Payment
	// Links and pricing tables, so it never links a user on its own.
	Reference string
	// MetaUser is metadata.user_id, which only a call with the account's
	// secret key can set (tollgate's billing API does).
	MetaUser string
}

// StripeAPI implements Stripe with stripe-go at the pinned API version.
type StripeAPI struct {
	*entitlements.StripeSource
	api *client.API
}

var _ Stripe = (*StripeAPI)(nil)

// NewStripeAPI returns a Stripe on a stripe-go client.
func NewStripeAPI(api *client.API) *StripeAPI {
	return &StripeAPI{StripeSource: entitlements.NewStripeSource(api), api: api}
}

// Checkout implements Stripe: one GET of the session with its subscription
// expanded.
func (s *StripeAPI) Checkout(ctx context.Context, id string) (*Checkout, error) {
	p := &stripe.CheckoutSessionParams{}
	p.Context = ctx
	p.AddExpand("subscription")
	cs, err := s.api.CheckoutSessions.Get(id, p)
	if stripeapi.IsMissing(err) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get checkout session: %w", err)
	}
	out := &Checkout{CheckoutUsers: CheckoutUsers{Reference: cs.ClientReferenceID, MetaUser: cs.Metadata["user_id"]}}
	if cs.Customer != nil {
		out.Customer = cs.Customer.ID
	}
	if sub := cs.Subscription; sub != nil {
		out.Trial = sub.TrialStart != 0 || sub.TrialEnd != 0
	}
	return out, nil
}

// FailedInvoice implements Stripe by listing the customer's open
// invoices, newest first. Reading the newest open invoice, rather than the
// one an event names, keeps the answer right whatever order invoice events
// arrive in: a late invoice.paid for an old invoice cannot clear a newer
// failure.
func (s *StripeAPI) FailedInvoice(ctx context.Context, customer string) (*entitlements.FailedInvoice, error) {
	p := &stripe.InvoiceListParams{Customer: stripe.String(customer), Status: stripe.String("open")}
	p.Context = ctx
	p.Limit = stripe.Int64(1)
	p.Single = true // one page: only the newest matters
	it := s.api.Invoices.List(p)
	var in *stripe.Invoice
	if it.Next() {
		in = it.Invoice()
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list open invoices: %w", err)
	}
	return failedInvoice(in), nil
}

// failedInvoice is what tollgate keeps of an open invoice whose payment
// failed; nil for none, or one not attempted yet. A hosted invoice URL
// that is not https is dropped: it is sent to customers as a link.
func failedInvoice(in *stripe.Invoice) *entitlements.FailedInvoice {
	if in == nil || in.AttemptCount <= 0 || in.Paid {
		return nil
	}
	fi := &entitlements.FailedInvoice{ID: in.ID, AttemptCount: in.AttemptCount,
		NextPaymentAttempt: stripeapi.Time(in.NextPaymentAttempt), AmountDue: in.AmountDue, Currency: string(in.Currency)}
	if strings.HasPrefix(in.HostedInvoiceURL, "https://") {
		fi.HostedInvoiceURL = in.HostedInvoiceURL
	}
	return fi
}
