package entitlements

import (
	"context"
	"errors"
	"time"
)

// Refetch rewrites a customer's stored state from Stripe as it is now,
// keeping what only tollgate records (Merge); adjust, when not nil, adds
// what the caller knows besides. A customer Stripe no longer has is stored
// as deleted. An unchanged state is not written (no announcement). It
// returns the state stored; source says who wrote it ("webhook:evt_…",
// "billing:change").
func Refetch(ctx context.Context, s Store, src Source, customer, source string, now time.Time,
	adjust func(context.Context, *State) error) (*State, error) {
	var stored *State
	err := s.Update(ctx, customer, func(cur *State) (*State, error) {
		fresh, err := src.Fetch(ctx, customer)
		if errors.Is(err, ErrUnknownCustomer) {
			// Stripe has no such customer (any more): nothing is entitled.
			fresh, err = &State{Customer: customer, Deleted: true}, nil
		}
		if err != nil {
			return nil, err
		}
		next := Merge(cur, fresh)
		if adjust != nil {
			if err := adjust(ctx, next); err != nil {
				return nil, err
			}
		}
		if cur != nil && cur.SameAs(next) {
			stored = cur
			return cur, nil // unchanged: no write, no announcement
		}
		next.Source, next.UpdatedAt = source, now
		stored = next
		return next, nil
	})
	if err != nil {
		return nil, err
	}
	return stored, nil
}
