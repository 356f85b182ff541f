package entitlements

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate-dev/tollgate/config"
)

// Census is what the store holds, counted: subscriptions by plan and
// Stripe status, and seats in use by plan.
type Census struct {
	Subscriptions map[PlanStatus]int64
	Seats         map[string]int64
}

// PlanStatus labels a count of subscriptions.
type PlanStatus struct{ Plan, Status string }

// CensusOptions configure Count.
type CensusOptions struct {
	Store  Store
	Seats  *Seats // nil: seats are not counted
	Plans  map[string]*config.Plan
	Gating config.Gating // the grace period decides which plan is entitled
	Now    time.Time
}

// censusBatch is how many customers one round trip reads.
const censusBatch = 500

// Count reads every stored customer and counts their subscriptions (each
// under every configured plan it holds a price of; deleted customers and
// subscriptions of other products are left out) and the seats held of
// each customer's entitled plan when it limits seats.
func Count(ctx context.Context, o CensusOptions) (Census, error) {
	plans := newGatePlans(o.Plans, o.Gating.AnyPrice)
	rules := Rules{Grace: o.Gating.GracePeriod}
	c := Census{Subscriptions: map[PlanStatus]int64{}, Seats: map[string]int64{}}
	customers, err := o.Store.Customers(ctx)
	if err != nil {
		return c, fmt.Errorf("entitlements: count: list customers: %w", err)
	}
	for len(customers) > 0 {
		batch := customers[:min(len(customers), censusBatch)]
		customers = customers[len(batch):]
		states, err := o.Store.GetMany(ctx, batch)
		if err != nil {
			return c, fmt.Errorf("entitlements: count: %w", err)
		}
		seated := map[string]string{} // customer -> its entitled seat plan
		for id, st := range states {
			if st.Deleted {
				continue
			}
			c.countSubscriptions(st, plans)
			v := newView(st, plans)
			d := rules.decide(&v, config.Require{Subscription: true}, o.Now)
			if l, ok := d.Seats(); ok && d.Allowed() {
				seated[id] = l.Plan
			}
		}
		if o.Seats == nil || len(seated) == 0 {
			continue
		}
		ids := make([]string, 0, len(seated))
		for id := range seated {
			ids = append(ids, id)
		}
		used, err := o.Seats.InUse(ctx, ids)
		if err != nil {
			return c, err
		}
		for id, n := range used {
			c.Seats[seated[id]] += n
		}
	}
	return c, nil
}

func (c Census) countSubscriptions(st *State, plans *Plans) {
	for _, s := range st.Subscriptions {
		seen := map[string]bool{}
		for _, price := range s.Prices {
			if name, ok := plans.byPrice[price]; ok && !seen[name] {
				seen[name] = true
				c.Subscriptions[PlanStatus{name, s.Status}]++
			}
		}
	}
}
