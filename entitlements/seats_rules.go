package entitlements

import (
	"slices"

	"github.com/tollgate-dev/tollgate/config"
)

// SeatLimit is the seat limit of a caller's entitled plan.
type SeatLimit struct {
	Plan  string // the plan it comes from
	Limit int64  // at least 0
	// Quantity is set when the limit is the subscription item's quantity
	// (seats: quantity).
	Quantity bool
}

// Seats returns the seat limit of the entitled plans, and false when
// seats are not limited (no plan, or a plan without seats).
func (d Decision) Seats() (SeatLimit, bool) {
	if d.seats == nil {
		return SeatLimit{}, false
	}
	return *d.seats, true
}

// SeatPlans returns the names of the plans that limit seats.
func (p *Plans) SeatPlans() []string {
	var out []string
	for name, s := range p.seats {
		if s.Limited() {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// seatsOf is the seat limit of one subscription holding plans (sorted):
// limited only if every plan limits seats, and then to the largest limit,
// as limitsOf combines meter limits.
func (p *Plans) seatsOf(s Subscription, plans []string) *SeatLimit {
	var out *SeatLimit
	for _, name := range plans {
		seats := p.seats[name]
		if !seats.Limited() {
			return nil
		}
		l := SeatLimit{Plan: name}
		if n, ok := seats.Fixed(); ok {
			l.Limit = n
		} else if seats == config.SeatsQuantity {
			l.Quantity, l.Limit = true, p.quantityOf(s, name)
		}
		if out == nil || l.Limit > out.Limit {
			out = &l
		}
	}
	return out
}

// quantityOf is the seat count a subscription buys of a plan: the
// quantities of its licensed items of the plan's prices.
func (p *Plans) quantityOf(s Subscription, plan string) int64 {
	var n int64
	for _, it := range s.Items {
		if !it.Metered && it.Quantity > 0 && p.byPrice[it.Price] == plan {
			n += it.Quantity
		}
	}
	return n
}

// SeatItem returns the subscription item whose quantity counts the seats
// of the customer's running subscription on a plan with seats (the first
// such subscription and licensed item by id), for billing.seats_sync.
func (p *Plans) SeatItem(st *State) (item Item, plan string, ok bool) {
	for _, s := range st.Subscriptions {
		switch s.Status {
		case StatusActive, StatusTrialing, StatusPastDue:
		default:
			continue
		}
		for _, it := range s.Items {
			name, known := p.byPrice[it.Price]
			if known && !it.Metered && p.seats[name].Limited() {
				return it, name, true
			}
		}
	}
	return Item{}, "", false
}

// mergeSeats combines the seat limits of several entitled subscriptions
// the way seatsOf combines plans.
func mergeSeats(limits []*SeatLimit) *SeatLimit {
	var out *SeatLimit
	for _, l := range limits {
		if l == nil {
			return nil
		}
		if out == nil || l.Limit > out.Limit {
			out = l
		}
	}
	return out
}
