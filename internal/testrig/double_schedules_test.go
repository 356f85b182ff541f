package testrig

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
)

// phasePrices lists a schedule's phases as "start-end:price×quantity,...".
func phasePrices(s *stripe.SubscriptionSchedule) string {
	var out []string
	for _, ph := range s.Phases {
		var items []string
		for _, it := range ph.Items {
			items = append(items, it.Price.ID+"×"+itoa(it.Quantity))
		}
		out = append(out, itoa(ph.StartDate)+"-"+itoa(ph.EndDate)+":"+strings.Join(items, ","))
	}
	return strings.Join(out, " ")
}

// downgradePhases keeps price_basic until the period ends, then price_pro
// for one month: the downgrade-at-period-end shape (here an upgrade, so the
// prices differ from sub_A's).
func downgradePhases(start int64) []*stripe.SubscriptionSchedulePhaseParams {
	return []*stripe.SubscriptionSchedulePhaseParams{
		{StartDate: stripe.Int64(start), EndDate: stripe.Int64(fxPeriodEnd),
			Items: []*stripe.SubscriptionSchedulePhaseItemParams{{Price: stripe.String("price_basic"), Quantity: stripe.Int64(1)}}},
		{Iterations: stripe.Int64(1), ProrationBehavior: stripe.String("none"),
			Items: []*stripe.SubscriptionSchedulePhaseItemParams{{Price: stripe.String("price_pro"), Quantity: stripe.Int64(1)}}},
	}
}

func TestDoubleScheduleLifecycle(t *testing.T) {
	d, sc := newBillingDouble(t)
	s, err := sc.SubscriptionSchedules.New(&stripe.SubscriptionScheduleParams{FromSubscription: stripe.String("sub_A")})
	if err != nil {
		t.Fatalf("SubscriptionSchedules.New(from_subscription): %v", err)
	}
	want := itoa(fxPeriodStart) + "-" + itoa(fxPeriodEnd) + ":price_basic×1"
	if !strings.HasPrefix(s.ID, "sub_sched_") || s.Status != "active" || s.EndBehavior != "release" || s.Subscription.ID != "sub_A" ||
		s.Customer.ID != "cus_A" || phasePrices(s) != want || s.CurrentPhase == nil || s.CurrentPhase.StartDate != fxPeriodStart {
		t.Errorf("schedule = %s status %s end %s sub %v, phases %s, current %+v; want sub_sched_..., active, release, sub_A, %s",
			s.ID, s.Status, s.EndBehavior, s.Subscription, phasePrices(s), s.CurrentPhase, want)
	}
	sub, err := sc.Subscriptions.Get("sub_A", nil)
	if err != nil || sub.Schedule == nil || sub.Schedule.ID != s.ID {
		t.Errorf("Subscriptions.Get(sub_A).Schedule = %+v, %v; want %s", sub.Schedule, err, s.ID)
	}

	up := &stripe.SubscriptionScheduleParams{EndBehavior: stripe.String("release"), Phases: downgradePhases(s.Phases[0].StartDate)}
	up.AddMetadata("reason", "upgrade")
	s, err = sc.SubscriptionSchedules.Update(s.ID, up)
	if err != nil {
		t.Fatalf("SubscriptionSchedules.Update(two phases): %v", err)
	}
	nextEnd := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC).Unix()
	want = itoa(fxPeriodStart) + "-" + itoa(fxPeriodEnd) + ":price_basic×1 " + itoa(fxPeriodEnd) + "-" + itoa(nextEnd) + ":price_pro×1"
	if phasePrices(s) != want || s.Phases[1].ProrationBehavior != "none" || s.Metadata["reason"] != "upgrade" {
		t.Errorf("phases = %s (%s), metadata %v; want %s, none, reason=upgrade", phasePrices(s), s.Phases[1].ProrationBehavior, s.Metadata, want)
	}
	if got, _ := sc.SubscriptionSchedules.Get(s.ID, nil); got == nil || phasePrices(got) != want {
		t.Errorf("SubscriptionSchedules.Get = %v; want phases %s", got, want)
	}
	if stored, ok := d.Schedule(s.ID); !ok || phasePrices(stored) != want {
		t.Errorf("Schedule(%s) = %v, %v; want phases %s", s.ID, stored, ok, want)
	}
	if sub, _ := d.Subscription("sub_A"); itemPrices(sub) != "si_A=price_basic×1" {
		t.Errorf("sub_A during phase 0 = %s; want si_A=price_basic×1", itemPrices(sub))
	}

	d.ApplySchedulePhase(s.ID, 1)
	if sub, _ := d.Subscription("sub_A"); !strings.HasSuffix(itemPrices(sub), "=price_pro×1") || sub.CurrentPeriodStart != fxPeriodEnd || sub.CurrentPeriodEnd != nextEnd {
		t.Errorf("sub_A in phase 1 = %s, period %d–%d; want price_pro, %d–%d", itemPrices(sub), sub.CurrentPeriodStart, sub.CurrentPeriodEnd, fxPeriodEnd, nextEnd)
	}

	s, err = sc.SubscriptionSchedules.Release(s.ID, &stripe.SubscriptionScheduleReleaseParams{})
	if err != nil {
		t.Fatalf("Release: %v", err)
	}
	if s.Status != "released" || s.ReleasedSubscription == nil || s.ReleasedSubscription.ID != "sub_A" || s.Subscription != nil || s.ReleasedAt != fxNow.Unix() {
		t.Errorf("released schedule = status %s, released_subscription %v, subscription %v, released_at %d; want released, sub_A, nil, now",
			s.Status, s.ReleasedSubscription, s.Subscription, s.ReleasedAt)
	}
	if sub, _ := sc.Subscriptions.Get("sub_A", nil); sub.Schedule != nil {
		t.Errorf("sub_A.Schedule after release = %+v; want nil", sub.Schedule)
	}
	_, err = sc.SubscriptionSchedules.Release(s.ID, &stripe.SubscriptionScheduleReleaseParams{})
	wantStripeErr(t, err, http.StatusBadRequest, "", "", "You cannot release a subscription schedule that is currently in the `released` status.")
	if _, err := sc.SubscriptionSchedules.New(&stripe.SubscriptionScheduleParams{FromSubscription: stripe.String("sub_A")}); err != nil {
		t.Errorf("a new schedule after release: %v; want it created", err)
	}
}

// A change to the current phase's items applies to the subscription at
// once; cancel ends the schedule and the subscription.
func TestDoubleScheduleCurrentPhaseAndCancel(t *testing.T) {
	d, sc := newBillingDouble(t)
	s := newSchedule(t, sc, "sub_A")
	phases := downgradePhases(fxPeriodStart)[:1]
	phases[0].Items[0].Quantity = stripe.Int64(4)
	if _, err := sc.SubscriptionSchedules.Update(s.ID, &stripe.SubscriptionScheduleParams{Phases: phases}); err != nil {
		t.Fatalf("Update(current phase × 4): %v", err)
	}
	if sub, _ := d.Subscription("sub_A"); itemPrices(sub) != "si_A=price_basic×4" {
		t.Errorf("sub_A = %s; want si_A=price_basic×4 at once", itemPrices(sub))
	}
	s, err := sc.SubscriptionSchedules.Cancel(s.ID, &stripe.SubscriptionScheduleCancelParams{})
	if err != nil || s.Status != "canceled" || s.CanceledAt != fxNow.Unix() {
		t.Fatalf("Cancel = %+v, %v; want canceled now", s, err)
	}
	if sub, _ := d.Subscription("sub_A"); sub.Status != stripe.SubscriptionStatusCanceled {
		t.Errorf("sub_A status after schedule cancel = %s; want canceled", sub.Status)
	}
	_, err = sc.SubscriptionSchedules.Update(s.ID, &stripe.SubscriptionScheduleParams{EndBehavior: stripe.String("cancel")})
	wantStripeErr(t, err, http.StatusBadRequest, "", "", "You cannot update a subscription schedule that is currently in the `canceled` status.")
}

// newSchedule creates a schedule from sub or ends the test.
func newSchedule(t *testing.T, sc *client.API, sub string) *stripe.SubscriptionSchedule {
	t.Helper()
	s, err := sc.SubscriptionSchedules.New(&stripe.SubscriptionScheduleParams{FromSubscription: stripe.String(sub)})
	if err != nil {
		t.Fatalf("SubscriptionSchedules.New(from %s): %v", sub, err)
	}
	return s
}

func TestDoubleScheduleCreateErrors(t *testing.T) {
	d, sc := newBillingDouble(t)
	d.PutSubscription(fxSubscription("sub_B", "cus_B", "price_pro"))
	s := newSchedule(t, sc, "sub_A")
	withMetadata := &stripe.SubscriptionScheduleParams{FromSubscription: stripe.String("sub_B")}
	withMetadata.AddMetadata("k", "v")
	cases := []struct {
		name   string
		params *stripe.SubscriptionScheduleParams
		code   stripe.ErrorCode
		param  string
		msg    string
	}{
		{"unknown subscription", &stripe.SubscriptionScheduleParams{FromSubscription: stripe.String("sub_missing")},
			"resource_missing", "from_subscription", "No such subscription: 'sub_missing'"},
		{"from_subscription with metadata", withMetadata, "", "metadata", "You cannot set `metadata` if `from_subscription` is set."},
		{"already scheduled", &stripe.SubscriptionScheduleParams{FromSubscription: stripe.String("sub_A")},
			"", "from_subscription", "You cannot migrate a subscription that is already attached to a schedule: `" + s.ID + "`."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sc.SubscriptionSchedules.New(tc.params)
			wantStripeErr(t, err, http.StatusBadRequest, tc.code, tc.param, tc.msg)
		})
	}
	if sub, _ := d.Subscription("sub_B"); sub.Schedule != nil {
		t.Errorf("sub_B.Schedule = %v; want nil after the refused from_subscription", sub.Schedule)
	}
	_, err := sc.SubscriptionSchedules.Get("sub_sched_missing", nil)
	wantStripeErr(t, err, http.StatusNotFound, "resource_missing", "schedule", "No such subscription_schedule: 'sub_sched_missing'")
}

func TestDoubleScheduleUpdateErrors(t *testing.T) {
	d, sc := newBillingDouble(t)
	s := newSchedule(t, sc, "sub_A")
	cases := []struct {
		name   string
		change func(p *stripe.SubscriptionScheduleParams) // of two valid phases
		code   stripe.ErrorCode
		param  string
		msg    string
	}{
		{"moved current phase", func(p *stripe.SubscriptionScheduleParams) { p.Phases[0].StartDate = stripe.Int64(fxNow.Unix()) },
			"", "phases[0][start_date]", "You can not modify the start date of the current phase."},
		{"start date now", func(p *stripe.SubscriptionScheduleParams) {
			p.Phases[0].StartDate, p.Phases[0].StartDateNow = nil, stripe.Bool(true)
		},
			"", "phases[0][start_date]", "You can not modify the start date of the current phase."},
		{"no anchor", func(p *stripe.SubscriptionScheduleParams) { p.Phases[0].StartDate = nil },
			"", "phases", "missing at least one phase with a `start_date`"},
		{"phase without items", func(p *stripe.SubscriptionScheduleParams) { p.Phases[1].Items = nil },
			"parameter_missing", "phases[1][items]", "Missing required param: phases[1][items]."},
		{"unknown price", func(p *stripe.SubscriptionScheduleParams) { p.Phases[1].Items[0].Price = stripe.String("price_x") },
			"resource_missing", "phases[1][items][0][price]", "No such price: 'price_x'"},
		{"one-time price", func(p *stripe.SubscriptionScheduleParams) { p.Phases[1].Items[0].Price = stripe.String("price_setup") },
			"", "phases[1][items][0][price]", "`type=recurring`"},
		{"end date and iterations", func(p *stripe.SubscriptionScheduleParams) { p.Phases[1].EndDate = stripe.Int64(fxPeriodEnd + 86400) },
			"", "phases[1]", "You may only specify one of these parameters: end_date, iterations."},
		{"gap between phases", func(p *stripe.SubscriptionScheduleParams) { p.Phases[1].StartDate = stripe.Int64(fxPeriodEnd + 86400) },
			"", "phases[1][start_date]", "must be the end_date of the phase before it"},
		{"bad phase proration", func(p *stripe.SubscriptionScheduleParams) { p.Phases[1].ProrationBehavior = stripe.String("later") },
			"", "phases[1][proration_behavior]", "must be one of"},
		{"bad end behavior", func(p *stripe.SubscriptionScheduleParams) { p.EndBehavior = stripe.String("stop") },
			"", "end_behavior", "must be one of"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &stripe.SubscriptionScheduleParams{Phases: downgradePhases(fxPeriodStart)}
			p.AddMetadata("reason", "refused")
			tc.change(p)
			_, err := sc.SubscriptionSchedules.Update(s.ID, p)
			wantStripeErr(t, err, http.StatusBadRequest, tc.code, tc.param, tc.msg)
		})
	}
	if got, _ := d.Schedule(s.ID); len(got.Phases) != 1 || len(got.Metadata) != 0 {
		t.Errorf("schedule after refused updates = %s %v; want its one original phase, no metadata", phasePrices(got), got.Metadata)
	}
}
