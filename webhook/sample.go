package webhook

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// SampleOptions describe the objects Sample builds.
type SampleOptions struct {
	Customer string // cus_...; required
	Price    string // the subscription's price
	User     string // checkout: client_reference_id and metadata.user_id
	// Status overrides a subscription's status (default: active, or what
	// the event type implies: canceled, paused, trialing).
	Status   string
	Features []string  // entitlement summary: lookup keys
	Now      time.Time // zero: time.Now()
	// PeriodEnd is a subscription's current_period_end (its period is the
	// month before); zero: a month from Now. One in the past shows a
	// past_due subscription whose grace period has run out.
	PeriodEnd time.Time
}

// samplers build data.object for each event type Sample knows.
var samplers = map[string]func(o SampleOptions) map[string]any{
	"customer.subscription.created":                   sampleSubscription(""),
	"customer.subscription.updated":                   sampleSubscription(""),
	"customer.subscription.deleted":                   sampleSubscription(stripe.SubscriptionStatusCanceled),
	"customer.subscription.paused":                    sampleSubscription(stripe.SubscriptionStatusPaused),
	"customer.subscription.resumed":                   sampleSubscription(""),
	"customer.subscription.trial_will_end":            sampleSubscription(stripe.SubscriptionStatusTrialing),
	"checkout.session.completed":                      sampleCheckout,
	"invoice.paid":                                    sampleInvoice(true),
	"invoice.payment_succeeded":                       sampleInvoice(true),
	"invoice.payment_failed":                          sampleInvoice(false),
	"invoice.payment_action_required":                 sampleInvoice(false),
	"entitlements.active_entitlement_summary.updated": sampleEntitlements,
	"customer.deleted":                                sampleCustomer,
}

// SampleTypes lists the event types Sample builds, sorted.
func SampleTypes() []string {
	out := make([]string, 0, len(samplers))
	for t := range samplers {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// Sample returns a realistic data.object for an event type, shaped as
// Stripe's API version 2023-10-16 sends it (what stripe-go v76 pins). The
// ids it derives from the customer are stable, so that a "created" and a
// later "deleted" name the same subscription.
func Sample(typ string, o SampleOptions) (map[string]any, error) {
	fn, ok := samplers[typ]
	if !ok {
		return nil, fmt.Errorf("webhook: no sample for %q (known: %s)", typ, strings.Join(SampleTypes(), ", "))
	}
	if !customerIDRe.MatchString(o.Customer) {
		return nil, fmt.Errorf("webhook: sample: %q is not a customer id (cus_...)", o.Customer)
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	return fn(o), nil
}

// NewEventID returns a fresh, unique event id.
func NewEventID() string { return "evt_tollgate_" + rand.Text() }

// NewEvent returns an event's JSON: Stripe's envelope around object.
func NewEvent(id, typ string, created time.Time, object any) ([]byte, error) {
	return json.Marshal(map[string]any{
		"id":               id,
		"object":           "event",
		"api_version":      stripe.APIVersion,
		"created":          created.Unix(),
		"data":             map[string]any{"object": object},
		"livemode":         false,
		"pending_webhooks": 1,
		"request":          map[string]any{"id": nil, "idempotency_key": nil},
		"type":             typ,
	})
}

// suffix is the part of a customer id after "cus_", for derived ids.
func suffix(o SampleOptions) string { return strings.TrimPrefix(o.Customer, "cus_") }

func sampleSubscription(status stripe.SubscriptionStatus) func(o SampleOptions) map[string]any {
	return func(o SampleOptions) map[string]any {
		st := string(status)
		if o.Status != "" {
			st = o.Status
		} else if st == "" {
			st = string(stripe.SubscriptionStatusActive)
		}
		now := o.Now.Unix()
		start, end := o.Now, o.Now.AddDate(0, 1, 0)
		if !o.PeriodEnd.IsZero() {
			start, end = o.PeriodEnd.AddDate(0, -1, 0), o.PeriodEnd
		}
		sub := map[string]any{
			"id": "sub_tollgate_" + suffix(o), "object": "subscription", "customer": o.Customer,
			"status": st, "created": min(now, start.Unix()), "start_date": min(now, start.Unix()), "livemode": false,
			"metadata": map[string]any{}, "current_period_start": start.Unix(), "current_period_end": end.Unix(),
			"cancel_at_period_end": false, "collection_method": "charge_automatically", "currency": "usd",
			"trial_start": nil, "trial_end": nil, "canceled_at": nil, "ended_at": nil,
			"items": map[string]any{"object": "list", "has_more": false, "url": "/v1/subscription_items",
				"data": []any{map[string]any{
					"id": "si_tollgate_" + suffix(o), "object": "subscription_item", "quantity": 1,
					"price": map[string]any{
						"id": o.Price, "object": "price", "active": true, "currency": "usd", "unit_amount": 1000,
						"type": "recurring", "product": "prod_tollgate",
						"recurring": map[string]any{"interval": "month", "interval_count": 1, "usage_type": "licensed"},
					},
				}}},
		}
		switch st {
		case string(stripe.SubscriptionStatusTrialing):
			sub["trial_start"], sub["trial_end"] = now, o.Now.AddDate(0, 0, 3).Unix()
		case string(stripe.SubscriptionStatusCanceled):
			sub["canceled_at"], sub["ended_at"] = now, now
		}
		return sub
	}
}

func sampleCheckout(o SampleOptions) map[string]any {
	cs := map[string]any{
		"id": "cs_test_tollgate_" + suffix(o), "object": "checkout.session", "mode": "subscription",
		"status": "complete", "payment_status": "paid", "customer": o.Customer,
		"subscription": "sub_tollgate_" + suffix(o), "created": o.Now.Unix(),
		"expires_at": o.Now.Add(24 * time.Hour).Unix(), "livemode": false, "currency": "usd",
		"client_reference_id": nil, "metadata": map[string]any{},
	}
	if o.User != "" {
		cs["client_reference_id"], cs["metadata"] = o.User, map[string]any{"user_id": o.User}
	}
	return cs
}

func sampleInvoice(paid bool) func(o SampleOptions) map[string]any {
	return func(o SampleOptions) map[string]any {
		in := map[string]any{
			"id": "in_tollgate_" + suffix(o), "object": "invoice", "customer": o.Customer,
			"subscription": "sub_tollgate_" + suffix(o), "billing_reason": "subscription_cycle",
			"currency": "usd", "amount_due": 1000, "amount_paid": 0, "amount_remaining": 1000,
			"attempted": true, "attempt_count": 1, "paid": paid, "status": "open",
			"created": o.Now.Unix(), "livemode": false, "next_payment_attempt": o.Now.AddDate(0, 0, 3).Unix(),
			"hosted_invoice_url": "https://invoice.stripe.com/i/acct_tollgate/test_in_tollgate_" + suffix(o),
			"invoice_pdf":        "https://pay.stripe.com/invoice/acct_tollgate/test_in_tollgate_" + suffix(o) + "/pdf",
		}
		if paid {
			in["status"], in["amount_paid"], in["amount_remaining"], in["next_payment_attempt"] = "paid", 1000, 0, nil
		}
		return in
	}
}

func sampleEntitlements(o SampleOptions) map[string]any {
	data := []any{}
	for _, k := range o.Features {
		data = append(data, map[string]any{"id": "ent_test_tollgate_" + k, "object": "entitlements.active_entitlement",
			"feature": "feat_test_" + k, "livemode": false, "lookup_key": k})
	}
	return map[string]any{
		"object": "entitlements.active_entitlement_summary", "customer": o.Customer, "livemode": false,
		"entitlements": map[string]any{"object": "list", "data": data, "has_more": false,
			"url": "/v1/customer/" + o.Customer + "/entitlements"},
	}
}

func sampleCustomer(o SampleOptions) map[string]any {
	return map[string]any{"id": o.Customer, "object": "customer", "created": o.Now.Unix(), "livemode": false,
		"metadata": map[string]any{}, "email": nil, "name": nil}
}
