package entitlements

import (
	"context"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
)

// StripeQuantities sets subscription item quantities through stripe-go.
type StripeQuantities struct{ api *client.API }

var _ SeatQuantities = (*StripeQuantities)(nil)

// NewStripeQuantities returns SeatQuantities on a stripe-go client.
func NewStripeQuantities(api *client.API) *StripeQuantities { return &StripeQuantities{api: api} }

// SetQuantity implements SeatQuantities.
func (q *StripeQuantities) SetQuantity(ctx context.Context, item string, quantity int64, proration, key string) error {
	p := &stripe.SubscriptionItemParams{Quantity: stripe.Int64(quantity), ProrationBehavior: stripe.String(proration)}
	p.Context = ctx
	p.SetIdempotencyKey(key)
	_, err := q.api.SubscriptionItems.Update(item, p)
	return err
}
