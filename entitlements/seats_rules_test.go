package entitlements

import (
	"slices"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/config"
)

func TestDecisionSeats(t *testing.T) {
	plans := NewPlans(map[string]*config.Plan{
		"solo":  {Prices: []string{"price_solo"}, Seats: "1"},
		"team":  {Prices: []string{"price_team_m", "price_team_y"}, Seats: config.SeatsQuantity},
		"big":   {Prices: []string{"price_big"}, Seats: "50"},
		"free":  {Prices: []string{"price_free"}},
		"usage": {Prices: []string{"price_usage"}},
	})
	items := func(s Subscription, its ...Item) Subscription { s.Items = its; return s }
	team := items(sub("active", "price_team_m", "price_usage"),
		Item{ID: "si_a", Price: "price_team_m", Quantity: 7},
		Item{ID: "si_b", Price: "price_usage", Metered: true})
	for _, c := range []struct {
		name  string
		subs  []Subscription
		want  SeatLimit
		limit bool
	}{
		{"fixed", []Subscription{sub("active", "price_solo")}, SeatLimit{Plan: "solo", Limit: 1}, true},
		{"no seats on the plan", []Subscription{sub("active", "price_free")}, SeatLimit{}, false},
		{"quantity of the licensed item", []Subscription{team}, SeatLimit{}, false}, // price_usage's plan has no seats
		{"quantity", []Subscription{items(sub("active", "price_team_y"), Item{ID: "si_y", Price: "price_team_y", Quantity: 4})},
			SeatLimit{Plan: "team", Limit: 4, Quantity: true}, true},
		{"quantity of two items of the plan", []Subscription{items(sub("active", "price_team_m", "price_team_y"),
			Item{ID: "si_1", Price: "price_team_m", Quantity: 2}, Item{ID: "si_2", Price: "price_team_y", Quantity: 3})},
			SeatLimit{Plan: "team", Limit: 5, Quantity: true}, true},
		{"quantity zero", []Subscription{items(sub("active", "price_team_m"), Item{ID: "si_0", Price: "price_team_m"})},
			SeatLimit{Plan: "team", Limit: 0, Quantity: true}, true},
		{"a lapsed seat plan does not limit", []Subscription{sub("canceled", "price_solo"), sub("active", "price_free")}, SeatLimit{}, false},
		{"two limited subscriptions: the larger", []Subscription{
			func() Subscription { s := sub("active", "price_solo"); s.ID = "sub_1"; return s }(),
			func() Subscription { s := sub("trialing", "price_big"); s.ID = "sub_2"; return s }()},
			SeatLimit{Plan: "big", Limit: 50}, true},
		{"an unlimited subscription beside a limited one", []Subscription{
			func() Subscription { s := sub("active", "price_solo"); s.ID = "sub_1"; return s }(),
			func() Subscription { s := sub("active", "price_free"); s.ID = "sub_2"; return s }()},
			SeatLimit{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := &State{Customer: "cus_1", Subscriptions: c.subs}
			v := newView(st, plans)
			d := Rules{}.decide(&v, config.Require{Subscription: true}, t0.Add(-time.Hour))
			got, ok := d.Seats()
			if got != c.want || ok != c.limit {
				t.Errorf("Seats() = %+v, %v; want %+v, %v", got, ok, c.want, c.limit)
			}
		})
	}
}

func TestSeatItem(t *testing.T) {
	plans := NewPlans(map[string]*config.Plan{
		"team":  {Prices: []string{"price_team"}, Seats: config.SeatsQuantity},
		"usage": {Prices: []string{"price_usage"}},
	})
	st := &State{Subscriptions: []Subscription{
		{ID: "sub_old", Status: StatusUnpaid, Items: []Item{{ID: "si_old", Price: "price_team", Quantity: 9}}},
		{ID: "sub_new", Status: StatusActive, Items: []Item{
			{ID: "si_m", Price: "price_usage", Metered: true}, {ID: "si_t", Price: "price_team", Quantity: 3}}},
	}}
	it, plan, ok := plans.SeatItem(st)
	if !ok || it.ID != "si_t" || plan != "team" {
		t.Errorf("SeatItem = %+v, %q, %v; want si_t of team", it, plan, ok)
	}
	if _, _, ok := plans.SeatItem(&State{}); ok {
		t.Error("SeatItem of a customer without subscriptions found one")
	}
}

func TestPutSubscriptionKeepsQuantities(t *testing.T) {
	st := &State{Customer: "cus_1"}
	PutSubscription(st, &stripe.Subscription{ID: "sub_1", Status: stripe.SubscriptionStatusActive,
		Items: &stripe.SubscriptionItemList{Data: []*stripe.SubscriptionItem{
			{ID: "si_b", Quantity: 0, Price: &stripe.Price{ID: "price_calls", Recurring: &stripe.PriceRecurring{UsageType: stripe.PriceRecurringUsageTypeMetered}}},
			{ID: "si_a", Quantity: 12, Price: &stripe.Price{ID: "price_seat", Recurring: &stripe.PriceRecurring{UsageType: stripe.PriceRecurringUsageTypeLicensed}}},
		}}})
	want := []Item{{ID: "si_a", Price: "price_seat", Quantity: 12}, {ID: "si_b", Price: "price_calls", Metered: true}}
	if got := st.Subscriptions[0].Items; !slices.Equal(got, want) {
		t.Errorf("items = %+v; want %+v", got, want)
	}
	// A quantity change is a change of state (the seat limit follows it).
	other := &State{Customer: "cus_1", Subscriptions: slices.Clone(st.Subscriptions)}
	other.Subscriptions[0].Items = []Item{{ID: "si_a", Price: "price_seat", Quantity: 13}, want[1]}
	if st.SameAs(other) {
		t.Error("SameAs ignores a changed quantity")
	}
}
