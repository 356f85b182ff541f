package webhook

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/tollgate-dev/tollgate/entitlements"
)

// Results of one delivery, the result label of
// tollgate_webhook_events_total.
const (
	resultProcessed = "processed" // the effect is stored (or the state was already so)
	resultDuplicate = "duplicate" // processed before: no second effect
	resultIgnored   = "ignored"   // a type tollgate does not act on, or nothing to act on
	resultStale     = "stale"     // trusted payload mode: older than the stored state
	resultInvalid   = "invalid"   // 400/405/413: not a verifiable Stripe event
	resultFailed    = "failed"    // 500: processing failed, Stripe retries
	resultBusy      = "busy"      // 503: another delivery is still processing it
)

// applier turns one verified event into its effect on the store.
type applier interface {
	// prepare reads what apply needs from the event; an error means the
	// event is malformed (400).
	prepare(j *job) error
	// apply stores the effect and returns the result label.
	apply(ctx context.Context, j *job) (string, error)
}

// refetch is the applier with a Stripe key: whatever the event says, the
// customer's state is re-read from Stripe inside the store's atomic update,
// so delivery order cannot matter (SPEC "Webhooks"). Because the read
// happens after the update's WATCH and before its commit, of two
// concurrent updates for one customer the one that commits second has also
// read Stripe second: a newer state is never overwritten by an older one.
type refetch struct {
	store entitlements.Store
	api   Stripe
	now   func() time.Time
	log   *slog.Logger
	links *linker
}

func (r *refetch) prepare(*job) error { return nil }

func (r *refetch) apply(ctx context.Context, j *job) (string, error) {
	var adjust func(context.Context, *entitlements.State) error
	switch j.kind {
	case kindNone:
		return resultIgnored, nil
	case kindCheckout:
		co, err := r.api.Checkout(ctx, j.session)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return "", err
		}
		if err != nil || !customerIDRe.MatchString(co.Customer) {
			// Nothing a retry could change: no such session, no customer
			// (a guest payment), or an id tollgate will not use as a key.
			r.log.InfoContext(ctx, "webhook: checkout names no usable customer", "event", j.id, "session", j.session, "err", err)
			return resultIgnored, nil
		}
		j.customer = co.Customer
		if err := r.links.link(ctx, j, co.CheckoutUsers); err != nil {
			return "", err
		}
		adjust = func(_ context.Context, st *entitlements.State) error {
			st.HadTrial = st.HadTrial || co.Trial
			return nil
		}
	case kindInvoicePaid, kindInvoiceFailed:
		adjust = func(ctx context.Context, st *entitlements.State) error {
			fi, err := r.api.FailedInvoice(ctx, j.customer)
			st.FailedInvoice, st.PaymentFailures = fi, 0
			if fi != nil {
				st.PaymentFailures = fi.AttemptCount
			}
			return err
		}
	}
	return resultProcessed, r.refresh(ctx, j, adjust)
}

// refresh rewrites the customer's state from Stripe now, keeping what only
// tollgate records, then lets adjust add what the event type contributes.
func (r *refetch) refresh(ctx context.Context, j *job, adjust func(context.Context, *entitlements.State) error) error {
	_, err := entitlements.Refetch(ctx, r.store, r.api, j.customer, "webhook:"+j.id, r.now(), adjust)
	return err
}
