package entitlements

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/internal/lease"
)

// SyncReport says what one reconciliation did.
type SyncReport struct {
	Customers int // customers checked
	Changed   int // states repaired
	Failed    int // customers that could not be checked (retried next time)
	Took      time.Duration
}

// Reconciler repairs drift between the store and Stripe, so that a missed
// webhook costs a bounded delay, never a wrong plan.
type Reconciler struct {
	Store    Store
	Source   *StripeSource
	Log      *slog.Logger
	Now      func() time.Time
	Progress func(done, total int) // optional, for `tollgate sync`
}

// Run pages through every subscription in Stripe and every customer in the
// store, and rewrites each state that differs from Stripe's.
func (r *Reconciler) Run(ctx context.Context) (SyncReport, error) {
	start := r.now()
	bySub, err := r.Source.allSubscriptions(ctx)
	if err != nil {
		return SyncReport{}, err
	}
	stored, err := r.Store.Customers(ctx)
	if err != nil {
		return SyncReport{}, fmt.Errorf("entitlements: sync: list stored customers: %w", err)
	}
	customers := make([]string, 0, len(bySub)+len(stored))
	for c := range bySub {
		customers = append(customers, c)
	}
	customers = append(customers, stored...)
	slices.Sort(customers)
	customers = slices.Compact(customers)

	rep := SyncReport{Customers: len(customers)}
	for i, c := range customers {
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
		changed, err := r.syncOne(ctx, c, bySub[c], start)
		switch {
		case err != nil:
			rep.Failed++
			r.Log.Warn("entitlements: sync customer failed", "customer", c, "err", err)
		case changed:
			rep.Changed++
			r.Log.Info("entitlements: sync repaired state", "customer", c)
		}
		if r.Progress != nil {
			r.Progress(i+1, len(customers))
		}
	}
	rep.Took = r.now().Sub(start)
	return rep, nil
}

// syncOne repairs one customer from the listing taken at start. A state
// written after start (by a webhook, which re-reads Stripe) is newer than
// the listing and is left alone: the next run checks it again.
func (r *Reconciler) syncOne(ctx context.Context, customer string, subs []*stripe.Subscription, start time.Time) (bool, error) {
	fresh := &State{Customer: customer}
	for _, s := range subs {
		PutSubscription(fresh, s)
	}
	feats, err := r.Source.activeEntitlements(ctx, customer)
	if err != nil {
		return false, err
	}
	fresh.Features = feats
	changed := false
	err = r.Store.Update(ctx, customer, func(cur *State) (*State, error) {
		changed = false
		if cur != nil && cur.UpdatedAt.After(start) {
			return cur, nil
		}
		next := Merge(cur, fresh)
		if cur != nil {
			next.Deleted = cur.Deleted && len(subs) == 0
		}
		if cur != nil && cur.SameAs(next) {
			return cur, nil
		}
		changed = true
		next.Source, next.UpdatedAt = "sync", r.now()
		return next, nil
	})
	return changed, err
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// RunEvery runs a reconciliation every interval on whichever replica takes
// the lease first, until ctx ends.
func (r *Reconciler) RunEvery(ctx context.Context, interval time.Duration) {
	lease.Every(ctx, interval, func(ctx context.Context, ttl time.Duration) (bool, error) {
		return r.Store.Acquire(ctx, "sync", ttl)
	}, func(ctx context.Context) {
		rep, err := r.Run(ctx)
		if err != nil {
			r.Log.Warn("entitlements: sync failed", "err", err)
			return
		}
		r.Log.Info("entitlements: sync done", "customers", rep.Customers, "changed", rep.Changed,
			"failed", rep.Failed, "took_ms", rep.Took.Milliseconds())
	})
}

// allSubscriptions pages through every subscription, grouped by customer.
func (s *StripeSource) allSubscriptions(ctx context.Context) (map[string][]*stripe.Subscription, error) {
	p := &stripe.SubscriptionListParams{Status: stripe.String("all")}
	p.Context = ctx
	p.Limit = stripe.Int64(100)
	it := s.api.Subscriptions.List(p)
	out := map[string][]*stripe.Subscription{}
	for it.Next() {
		sub := it.Subscription()
		if sub.Customer != nil && sub.Customer.ID != "" {
			out[sub.Customer.ID] = append(out[sub.Customer.ID], sub)
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("entitlements: sync: list subscriptions: %w", err)
	}
	return out, nil
}
