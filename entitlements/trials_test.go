package entitlements

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/config"
)

func TestTrialEnds(t *testing.T) {
	plans := NewPlans(map[string]*config.Plan{"pro": {Prices: []string{"price_pro"}}, "team": {Prices: []string{"price_team"}}})
	trialEnd := t0.Add(72 * time.Hour)
	trial := func(id string, mod ...func(*Subscription)) Subscription {
		s := Subscription{ID: id, Status: StatusTrialing, Prices: []string{"price_pro"}, TrialEnd: trialEnd}
		for _, m := range mod {
			m(&s)
		}
		return s
	}
	as := func(status string) func(*Subscription) { return func(s *Subscription) { s.Status = status } }
	state := func(subs ...Subscription) *State { return &State{Customer: "cus_t", Subscriptions: subs} }
	ended := func(e Ended, subs ...Subscription) *State { st := state(subs...); st.Ended = []Ended{e}; return st }
	for _, c := range []struct {
		name          string
		before, after *State
		want          []TrialEnd
	}{
		{"still trialing", state(trial("sub_1")), state(trial("sub_1")), nil},
		{"converted", state(trial("sub_1")), state(trial("sub_1", as(StatusActive))), []TrialEnd{{"sub_1", "pro", TrialConverted}}},
		{"ended unpaid: past_due", state(trial("sub_1")), state(trial("sub_1", as(StatusPastDue))), []TrialEnd{{"sub_1", "pro", TrialExpired}}},
		{"no payment method: paused", state(trial("sub_1")), state(trial("sub_1", as(StatusPaused))), []TrialEnd{{"sub_1", "pro", TrialExpired}}},
		{"unpaid", state(trial("sub_1")), state(trial("sub_1", as(StatusUnpaid))), []TrialEnd{{"sub_1", "pro", TrialExpired}}},
		{"incomplete", state(trial("sub_1")), state(trial("sub_1", as(StatusIncomplete))), []TrialEnd{{"sub_1", "pro", TrialExpired}}},
		{"canceled during the trial", state(trial("sub_1")),
			ended(Ended{ID: "sub_1", Status: StatusCanceled, EndedAt: t0, TrialEnd: trialEnd}), []TrialEnd{{"sub_1", "pro", TrialCanceled}}},
		{"canceled by Stripe at the trial's end", state(trial("sub_1")),
			ended(Ended{ID: "sub_1", Status: StatusCanceled, EndedAt: trialEnd, TrialEnd: trialEnd}), []TrialEnd{{"sub_1", "pro", TrialExpired}}},
		{"cancel requested, ended at the trial's end", state(trial("sub_1")),
			ended(Ended{ID: "sub_1", Status: StatusCanceled, EndedAt: trialEnd, Requested: true}), []TrialEnd{{"sub_1", "pro", TrialCanceled}}},
		{"cancel_at_period_end set during the trial", state(trial("sub_1", func(s *Subscription) { s.CancelAtPeriodEnd = true })),
			ended(Ended{ID: "sub_1", Status: StatusCanceled, EndedAt: trialEnd.Add(time.Second)}), []TrialEnd{{"sub_1", "pro", TrialCanceled}}},
		{"incomplete_expired", state(trial("sub_1")), ended(Ended{ID: "sub_1", Status: StatusIncompleteExpired}), []TrialEnd{{"sub_1", "pro", TrialExpired}}},
		{"gone from Stripe", state(trial("sub_1")), state(), []TrialEnd{{"sub_1", "pro", TrialCanceled}}},
		{"customer deleted", state(trial("sub_1")), &State{Customer: "cus_t", Deleted: true}, []TrialEnd{{"sub_1", "pro", TrialCanceled}}},
		{"state removed", state(trial("sub_1")), nil, []TrialEnd{{"sub_1", "pro", TrialCanceled}}},
		{"active to canceled is no trial", state(trial("sub_1", as(StatusActive))), state(), nil},
		{"a new trial", state(), state(trial("sub_1")), nil},
		{"first sight", nil, state(trial("sub_1", as(StatusActive))), nil},
		{"another product's trial", state(trial("sub_x", func(s *Subscription) { s.Prices = []string{"price_other"} })), state(), nil},
		{"the plan is the first by name", state(trial("sub_1", func(s *Subscription) { s.Prices = []string{"price_team", "price_pro"} })),
			state(trial("sub_1", as(StatusActive))), []TrialEnd{{"sub_1", "pro", TrialConverted}}},
		{"two trials, one converts", state(trial("sub_1"), trial("sub_2")), state(trial("sub_1"), trial("sub_2", as(StatusActive))),
			[]TrialEnd{{"sub_2", "pro", TrialConverted}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := plans.TrialEnds(c.before, c.after); !slices.Equal(got, c.want) {
				t.Errorf("TrialEnds = %v; want %v", got, c.want)
			}
		})
	}
}

// Two writers refresh one customer at once (a webhook and the
// reconciliation, on two replicas): the trial's end is committed by one
// of them, and observed once.
func TestObserveSeesEachCommittedChangeOnce(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			plans := NewPlans(map[string]*config.Plan{"pro": {Prices: []string{"price_pro"}}})
			base := open(t)
			var mu sync.Mutex
			var ends []TrialEnd
			observe := func(before, after *State) {
				mu.Lock()
				defer mu.Unlock()
				ends = append(ends, plans.TrialEnds(before, after)...)
			}
			a, b := Observe(base, observe), Observe(base, observe)
			ctx := context.Background()
			put := func(s Store, status string) func(cur *State) (*State, error) {
				return func(cur *State) (*State, error) {
					next := &State{Customer: "cus_o", Subscriptions: []Subscription{{ID: "sub_o", Status: status, Prices: []string{"price_pro"}}}}
					if cur != nil && cur.SameAs(next) {
						return cur, nil
					}
					return next, nil
				}
			}
			if err := a.Update(ctx, "cus_o", put(a, StatusTrialing)); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for _, s := range []Store{a, b, a, b} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := s.Update(ctx, "cus_o", put(s, StatusActive)); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			if err := b.Update(ctx, "cus_o", put(b, StatusActive)); err != nil { // a redelivery: no change
				t.Fatal(err)
			}
			if want := []TrialEnd{{"sub_o", "pro", TrialConverted}}; !slices.Equal(ends, want) {
				t.Errorf("observed %v; want %v once", ends, want)
			}
		})
	}
}
