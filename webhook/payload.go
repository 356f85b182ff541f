package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/entitlements"
)

// payload is the applier of trusted payload mode, used only when no Stripe
// secret key is configured (tollgate demo, offline tests): with nothing to
// re-fetch from, the state is taken from the signed event itself.
//
// Order safety then rests on the event's created time: the state written
// from an event records that time (State.UpdatedAt), and an event created
// before it is not applied (result "stale"). Events created in the same
// second apply in arrival order. The watermark is per customer, so with
// several subscriptions an older event about one of them is dropped after a
// newer one about another: one more reason this mode is not for production.
type payload struct {
	store entitlements.Store
	log   *slog.Logger
	links *linker
}

func (p *payload) prepare(j *job) error {
	var err error
	switch j.kind {
	case kindSubscription:
		var sub stripe.Subscription
		if err = json.Unmarshal(j.object, &sub); err == nil {
			j.change = func(st *entitlements.State) { entitlements.PutSubscription(st, &sub) }
		}
	case kindCheckout:
		err = p.prepareCheckout(j)
	case kindInvoicePaid:
		j.change = func(st *entitlements.State) { st.PaymentFailures, st.FailedInvoice = 0, nil }
	case kindInvoiceFailed:
		var in stripe.Invoice
		if err = json.Unmarshal(j.object, &in); err == nil {
			j.change = func(st *entitlements.State) {
				st.PaymentFailures, st.FailedInvoice = in.AttemptCount, failedInvoice(&in)
			}
		}
	case kindEntitlements:
		var sum activeEntitlementSummary
		if err = json.Unmarshal(j.object, &sum); err == nil {
			j.change = func(st *entitlements.State) { st.Features = sum.lookupKeys() }
		}
	case kindCustomerDeleted:
		j.change = func(st *entitlements.State) {
			st.Deleted, st.Subscriptions, st.Features = true, nil, nil
		}
	}
	if err != nil {
		return fmt.Errorf("%w: %s object: %v", ErrMalformed, j.typ, err)
	}
	return nil
}

func (p *payload) prepareCheckout(j *job) error {
	var cs stripe.CheckoutSession
	if err := json.Unmarshal(j.object, &cs); err != nil {
		return err
	}
	if j.customer == "" {
		return nil // no customer: nothing to record
	}
	if !customerIDRe.MatchString(j.customer) {
		return fmt.Errorf("customer %.40q is not a customer id", j.customer)
	}
	j.users = CheckoutUsers{Reference: cs.ClientReferenceID, MetaUser: cs.Metadata["user_id"]}
	sub := cs.Subscription
	j.change = func(st *entitlements.State) {
		// In an event the subscription is an id; only an expanded one
		// (as `tollgate trigger` never sends) says more.
		if sub != nil && sub.Status != "" {
			entitlements.PutSubscription(st, sub)
		}
	}
	return nil
}

func (p *payload) apply(ctx context.Context, j *job) (string, error) {
	if j.change == nil {
		return resultIgnored, nil
	}
	if j.kind == kindCheckout {
		if err := p.links.link(ctx, j, j.users); err != nil {
			return "", err
		}
	}
	result := resultProcessed
	err := p.store.Update(ctx, j.customer, func(cur *entitlements.State) (*entitlements.State, error) {
		result = resultProcessed
		if cur != nil && strings.HasPrefix(cur.Source, "webhook:") && j.created.Before(cur.UpdatedAt) {
			result = resultStale
			return cur, nil
		}
		next := clone(cur, j.customer)
		j.change(next)
		// UpdatedAt is the created time of the event the state is from: the
		// watermark later events are compared with.
		next.Source, next.UpdatedAt = "webhook:"+j.id, j.created
		return next, nil
	})
	return result, err
}

// clone returns a deep copy of cur (a new state when there is none), so a
// change never touches the state Update may hand to a retry.
func clone(cur *entitlements.State, customer string) *entitlements.State {
	if cur == nil {
		return &entitlements.State{Customer: customer}
	}
	next := *cur
	next.Features = slices.Clone(cur.Features)
	next.Subscriptions = make([]entitlements.Subscription, len(cur.Subscriptions))
	for i, s := range cur.Subscriptions {
		s.Prices, s.Items = slices.Clone(s.Prices), slices.Clone(s.Items)
		next.Subscriptions[i] = s
	}
	return &next
}

// activeEntitlementSummary is the object of
// entitlements.active_entitlement_summary.updated, which stripe-go v76 does
// not define.
type activeEntitlementSummary struct {
	Customer     string `json:"customer"`
	Entitlements struct {
		Data []struct {
			LookupKey string `json:"lookup_key"`
		} `json:"data"`
	} `json:"entitlements"`
}

func (s *activeEntitlementSummary) lookupKeys() []string {
	var keys []string
	for _, e := range s.Entitlements.Data {
		if e.LookupKey != "" {
			keys = append(keys, e.LookupKey)
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}
