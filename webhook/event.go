package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/entitlements"
)

// Errors callers may branch on.
var (
	// ErrMalformed marks a correctly signed event that tollgate cannot use
	// (no id, no object, an id of the wrong shape): answered 400, because a
	// retry of the same bytes cannot succeed.
	ErrMalformed = errors.New("webhook: malformed event")
	// ErrNotFound is returned by Stripe.Checkout for a session Stripe does
	// not know.
	ErrNotFound = errors.New("webhook: no such object in Stripe")
)

// kind is what tollgate does with an event type.
type kind int

const (
	kindNone            kind = iota // not handled: answered 200, forwarded if configured
	kindSubscription                // refresh the customer
	kindCheckout                    // link the user, mark the trial, refresh
	kindInvoicePaid                 // payment failures cleared, refresh
	kindInvoiceFailed               // payment failures recorded, refresh
	kindEntitlements                // refresh (features)
	kindCustomerDeleted             // the customer is gone
)

// handled maps every event type of the SPEC to its kind.
var handled = map[string]kind{
	"checkout.session.completed":                   kindCheckout,
	"customer.subscription.created":                kindSubscription,
	"customer.subscription.updated":                kindSubscription,
	"customer.subscription.deleted":                kindSubscription,
	"customer.subscription.paused":                 kindSubscription,
	"customer.subscription.resumed":                kindSubscription,
	"customer.subscription.trial_will_end":         kindSubscription,
	"customer.subscription.pending_update_applied": kindSubscription,
	"customer.subscription.pending_update_expired": kindSubscription,
	"invoice.paid":                                 kindInvoicePaid,
	"invoice.payment_succeeded":                    kindInvoicePaid,
	"invoice.payment_failed":                       kindInvoiceFailed,
	"invoice.payment_action_required":              kindInvoiceFailed,
	// stripe-go v76 has no type or constant for this one: matched by name.
	"entitlements.active_entitlement_summary.updated": kindEntitlements,
	"customer.deleted": kindCustomerDeleted,
}

// HandledTypes lists the event types tollgate acts on, sorted.
func HandledTypes() []string {
	out := make([]string, 0, len(handled))
	for t := range handled {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// typeLabel is an event type as the metric's type label: the handled
// types by name, anything else as "other", so the label set stays bounded
// whatever Stripe (or an attacker with a valid secret) sends.
func typeLabel(t string) string {
	if _, ok := handled[t]; ok {
		return t
	}
	return typeOther
}

// Stripe ids: a prefix, '_', then letters, digits and '_'. Checking them
// keeps braces (the Redis Cluster hash tag) and oversized keys out of the
// store.
var (
	eventIDRe    = regexp.MustCompile(`^evt_[A-Za-z0-9_]{1,250}$`)
	customerIDRe = regexp.MustCompile(`^cus_[A-Za-z0-9_]{1,250}$`)
	sessionIDRe  = regexp.MustCompile(`^cs_[A-Za-z0-9_]{1,250}$`)
)

// job is one verified event, reduced to what processing needs.
type job struct {
	id      string
	typ     string
	kind    kind
	created time.Time
	body    []byte          // as Stripe sent it, for forwarding
	object  json.RawMessage // data.object as sent

	customer string // the customer it is about (checkout: known after re-fetch)
	session  string // checkout.session.completed: the session id
	// Trusted payload mode only (no Stripe key): the change the payload
	// makes, and the users a checkout names.
	change func(st *entitlements.State)
	users  CheckoutUsers
}

// newJob checks a verified event's envelope and reads the ids it refers to
// from data.object. Ids are read from the raw map, not a typed struct, so
// that an event of any API version can be used: the objects themselves are
// re-fetched at the pinned version.
func newJob(ev *stripe.Event, body []byte) (*job, error) {
	switch {
	case !eventIDRe.MatchString(ev.ID):
		return nil, fmt.Errorf("%w: id %.40q is not an event id", ErrMalformed, ev.ID)
	case ev.Type == "" || len(ev.Type) > 100:
		return nil, fmt.Errorf("%w: no type", ErrMalformed)
	case ev.Created <= 0:
		return nil, fmt.Errorf("%w: no created time", ErrMalformed)
	case ev.Data == nil || ev.Data.Object == nil:
		return nil, fmt.Errorf("%w: no data.object", ErrMalformed)
	}
	j := &job{id: ev.ID, typ: string(ev.Type), kind: handled[string(ev.Type)],
		created: time.Unix(ev.Created, 0).UTC(), body: body, object: ev.Data.Raw}
	obj := ev.Data.Object
	switch j.kind {
	case kindNone:
		return j, nil
	case kindCheckout:
		j.session = idOf(obj["id"])
		if !sessionIDRe.MatchString(j.session) {
			return nil, fmt.Errorf("%w: data.object.id %.40q is not a checkout session id", ErrMalformed, j.session)
		}
		// The customer is taken from the re-fetched session; in trusted
		// payload mode from this one (checked there).
		j.customer = idOf(obj["customer"])
		return j, nil
	case kindCustomerDeleted:
		j.customer = idOf(obj["id"])
	default:
		j.customer = idOf(obj["customer"])
	}
	if !customerIDRe.MatchString(j.customer) {
		return nil, fmt.Errorf("%w: %s has no customer id (got %.40q)", ErrMalformed, j.typ, j.customer)
	}
	return j, nil
}

// idOf reads an id from a field that holds an id or an expanded object.
func idOf(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case map[string]any:
		id, _ := x["id"].(string)
		return id
	}
	return ""
}
