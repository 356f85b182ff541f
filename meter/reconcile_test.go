package meter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

func TestPeriod(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		name, now, period, from, to string
	}{
		{"current", "2024-03-15T10:07:00Z", PeriodCurrent, "2024-03-01T00:00:00Z", "2024-03-15T10:00:00Z"},
		{"current within the lag of an hour", "2024-03-15T10:04:00Z", PeriodCurrent, "2024-03-01T00:00:00Z", "2024-03-15T09:00:00Z"},
		{"current at the very start of a month", "2024-03-01T00:03:00Z", PeriodCurrent, "2024-03-01T00:00:00Z", "2024-03-01T00:00:00Z"},
		{"current in another zone", "2024-03-01T01:30:00+02:00", PeriodCurrent, "2024-02-01T00:00:00Z", "2024-02-29T23:00:00Z"},
		{"previous", "2024-03-15T10:07:00Z", PeriodPrevious, "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z"},
		{"previous in January", "2024-01-02T00:00:00Z", PeriodPrevious, "2023-12-01T00:00:00Z", "2024-01-01T00:00:00Z"},
	} {
		from, to, err := Period(c.period, at(c.now))
		if err != nil || !from.Equal(at(c.from)) || !to.Equal(at(c.to)) {
			t.Errorf("%s: Period(%s, %s) = %s, %s, %v; want %s, %s", c.name, c.period, c.now, from, to, err, c.from, c.to)
		}
	}
	if _, _, err := Period("last-week", time.Now()); err == nil || !strings.Contains(err.Error(), `"last-week" is not current or previous`) {
		t.Errorf("Period(last-week) error = %v", err)
	}
}

// reconcileRig counts usage at 10:30 on the 1st (testrig.MonthNoon − 90 min)
// and has it reported to the double, which holds the api_calls meter.
type reconcileRig struct {
	*rig
	now   time.Time
	clock *fakeClock
	m     *Meter
}

func newReconcileRig(t *testing.T) *reconcileRig {
	r := &reconcileRig{rig: newRig(t), now: testrig.MonthNoon()}
	r.clock = newFakeClock(r.now.Add(-90 * time.Minute))
	r.double.PutMeter(&stripe.BillingMeter{ID: "mtr_calls", EventName: "api_calls"})
	r.m = r.start(func(o *Options) { o.Now = r.clock.Now })
	return r
}

// countReported counts units per customer and waits until Stripe has them
// and Redis records them reported.
func (r *reconcileRig) countReported(units map[string]int64) {
	r.t.Helper()
	want := sumEvents(r.double)
	for c, u := range units {
		r.m.Count(c, "calls", u)
		want[c] += u
	}
	r.clock.Add(5 * time.Second) // the window closes
	waitReported(r.t, r.double, want, 10*time.Second)
	for c := range units {
		waitRow(r.t, r.rig, c, func(row Row) error {
			if row.Pending != 0 {
				return fmt.Errorf("%s: %d pending", c, row.Pending)
			}
			return nil
		})
	}
}

func (r *reconcileRig) reconciler(mutate func(*Reconciler)) *Reconciler {
	rec := &Reconciler{Redis: r.admin, Keys: r.keys, Config: testMetering(),
		Summaries: NewStripeSummaries(testrig.StripeClient(r.t, r.double.URL())), Rate: 1000, Metrics: metrics.New(),
		Log: testLogger(), Now: func() time.Time { return r.now }}
	if mutate != nil {
		mutate(rec)
	}
	return rec
}

func (r *reconcileRig) reconcile(period string, mutate func(*Reconciler)) ReconcileReport {
	r.t.Helper()
	rep, err := r.reconciler(mutate).Run(context.Background(), period)
	if err != nil {
		r.t.Fatalf("reconcile %s: %v", period, err)
	}
	return rep
}

// row finds a customer's row for the calls meter.
func row(t *testing.T, rep ReconcileReport, customer string) ReconcileRow {
	t.Helper()
	for _, r := range rep.Rows {
		if r.Customer == customer && r.Meter == "calls" {
			return r
		}
	}
	t.Fatalf("no row for %s in %+v", customer, rep.Rows)
	return ReconcileRow{}
}

func stripeOf(r ReconcileRow) string {
	if r.Stripe == nil {
		return "nil"
	}
	return fmt.Sprint(*r.Stripe)
}

// What tollgate counted and reported agrees with Stripe's summaries, in
// the current month and, a month later, as the previous one.
func TestReconcileAgrees(t *testing.T) {
	r := newReconcileRig(t)
	r.countReported(map[string]int64{"cus_A": 5, "cus_B": 7})
	rep := r.reconcile(PeriodCurrent, nil)
	if !rep.OK() || rep.Compared != 2 || rep.DriftUnits["calls"] != 0 {
		t.Errorf("report = %+v; want 2 rows compared, no drift", rep)
	}
	for c, want := range map[string]int64{"cus_A": 5, "cus_B": 7} {
		got := row(t, rep, c)
		if got.Counted != want || got.Reported != want || got.Pending != 0 || got.Stripe == nil || *got.Stripe != want || got.Drift != 0 {
			t.Errorf("%s = %+v (stripe %s); want %d counted, reported and in Stripe", c, got, stripeOf(got), want)
		}
	}
	r.now = r.now.AddDate(0, 1, 0)
	prev := r.reconcile(PeriodPrevious, nil)
	if got := row(t, prev, "cus_A"); !prev.OK() || got.Counted != 5 || stripeOf(got) != "5" {
		t.Errorf("a month later, the previous month = %+v; want cus_A 5 and 5", prev)
	}
	cur := r.reconcile(PeriodCurrent, nil)
	if got := row(t, cur, "cus_A"); !cur.OK() || got.Counted != 0 || stripeOf(got) != "0" {
		t.Errorf("a month later, the current month = %+v; want cus_A with nothing on either side", cur)
	}
}

// Stripe's summaries disagreeing: an event tollgate never sent (+), a
// report Stripe refused for good (−) and an event in a month tollgate
// counted nothing for are drift; units not yet reported are not.
func TestReconcileFindsDrift(t *testing.T) {
	r := newReconcileRig(t)
	r.countReported(map[string]int64{"cus_A": 5, "cus_B": 7})
	r.double.InjectMeterEvent("api_calls", "cus_A", 3, r.now.Add(-80*time.Minute))
	r.double.InjectMeterEvent("api_calls", "cus_B", 100, r.now.Add(-10*time.Minute)) // after the period's end (11:00)

	r.double.FailNextWith(1, testrig.Fault{Status: 400, Type: "invalid_request_error", Code: "resource_missing",
		Message: "No such customer: 'cus_gone'", ShouldRetry: "false", PathPrefix: "/v1/billing/meter_events"})
	r.m.Count("cus_gone", "calls", 4)
	r.clock.Add(5 * time.Second)
	waitRow(t, r.rig, "cus_gone", func(row Row) error {
		if row.Parked != 4 {
			return fmt.Errorf("cus_gone %+v; want 4 parked", row)
		}
		return nil
	})
	// Counted by a replica that never reports: pending.
	quiet := r.start(func(o *Options) { o.Now = r.clock.Now; o.Sender = nil })
	quiet.Count("cus_P", "calls", 6)
	waitRow(t, r.rig, "cus_P", func(row Row) error {
		if row.Counted != 6 {
			return fmt.Errorf("cus_P %+v; want 6 counted", row)
		}
		return nil
	})

	rep := r.reconcile(PeriodCurrent, nil)
	for _, c := range []struct {
		customer                                string
		counted, pending, parked, stripe, drift int64
	}{
		{"cus_A", 5, 0, 0, 8, 3},
		{"cus_B", 7, 0, 0, 7, 0},
		{"cus_P", 6, 6, 0, 0, 0},
		{"cus_gone", 4, 0, 4, 0, -4},
	} {
		got := row(t, rep, c.customer)
		if got.Counted != c.counted || got.Pending != c.pending || got.Parked != c.parked || stripeOf(got) != fmt.Sprint(c.stripe) || got.Drift != c.drift {
			t.Errorf("%s = %+v (stripe %s); want counted %d pending %d parked %d stripe %d drift %d",
				c.customer, got, stripeOf(got), c.counted, c.pending, c.parked, c.stripe, c.drift)
		}
	}
	if rep.OK() || rep.Drifting != 2 || rep.DriftUnits["calls"] != 7 {
		t.Errorf("report: %d drifting, %v units; want 2 rows, 7 units", rep.Drifting, rep.DriftUnits)
	}

	// Next month: tollgate counted nothing, Stripe has an event.
	r.now = r.now.AddDate(0, 1, 0)
	r.double.InjectMeterEvent("api_calls", "cus_B", 2, r.now.Add(-90*time.Minute))
	next := r.reconcile(PeriodCurrent, nil)
	if got := row(t, next, "cus_B"); got.Counted != 0 || stripeOf(got) != "2" || got.Drift != 2 {
		t.Errorf("next month cus_B = %+v (stripe %s); want 0 counted, 2 in Stripe, drift 2", got, stripeOf(got))
	}
}

// Rows that cannot be compared say why: usage records (no summaries), no
// Billing Meter for the event name, a meter that counts events, Stripe
// failing for one row; the others are still compared.
func TestReconcileProblems(t *testing.T) {
	r := newReconcileRig(t)
	r.double.PutMeter(&stripe.BillingMeter{ID: "mtr_count", EventName: "exports",
		DefaultAggregation: &stripe.BillingMeterDefaultAggregation{Formula: stripe.BillingMeterDefaultAggregationFormulaCount}})
	quiet := r.start(func(o *Options) {
		o.Now, o.Sender = r.clock.Now, nil
		o.Config.Meters = map[string]*config.Meter{"calls": {EventName: "api_calls"}, "legacy": {Mode: config.ModeUsageRecords, Price: "price_m"},
			"missing": {EventName: "nowhere"}, "exports": {EventName: "exports"}}
	})
	for _, m := range []string{"calls", "legacy", "missing", "exports"} {
		quiet.Count("cus_X", m, 1)
	}
	quiet.Count("cus_Y", "calls", 1)
	testrig.WaitFor(t, 10*time.Second, func() error {
		if row := r.usageRow("cus_Y", "calls"); row.Counted != 1 {
			return errors.New("not flushed yet")
		}
		return nil
	})
	r.double.FailNextWith(1, testrig.Fault{Status: 400, Type: "invalid_request_error", Message: "No such customer: 'cus_X'",
		ShouldRetry: "false", PathPrefix: "/v1/billing/meters/mtr_calls"})
	rep := r.reconcile(PeriodCurrent, func(rec *Reconciler) { rec.Config.Meters = quiet.cfg.Meters })
	notes := map[string]string{}
	for _, row := range rep.Rows {
		if row.Customer == "cus_X" {
			notes[row.Meter] = fmt.Sprintf("%v %s", row.Problem, row.Note)
		}
	}
	for meter, want := range map[string]string{
		"legacy":  "false usage_records: Stripe keeps no meter event summaries",
		"missing": `true no Billing Meter with event_name "nowhere" in Stripe`,
		"exports": "true Billing Meter mtr_count aggregates by count",
		"calls":   "true stripe: ",
	} {
		if !strings.HasPrefix(notes[meter], want) {
			t.Errorf("cus_X %s: %q; want %q...", meter, notes[meter], want)
		}
	}
	if y := row(t, rep, "cus_Y"); stripeOf(y) != "0" || y.Drift != 0 || y.Pending != 1 {
		t.Errorf("cus_Y = %+v; want compared (0 in Stripe, 1 pending, no drift)", y)
	}
	if rep.OK() || rep.Problems != 3 {
		t.Errorf("report: %d problems; want 3", rep.Problems)
	}
	// A window that does not divide an hour cannot be reconciled by hour.
	if _, err := r.reconciler(func(rec *Reconciler) { rec.Config.Window = 7 * time.Second }).Run(context.Background(), PeriodCurrent); !errors.Is(err, ErrNotHourly) {
		t.Errorf("reconcile with a 7s window = %v; want ErrNotHourly", err)
	}
}

// The periodic check (metering.reconcile_interval) sets
// tollgate_usage_drift_units and stops with its context.
func TestReconcileEverySetsTheDriftGauge(t *testing.T) {
	r := newReconcileRig(t)
	r.countReported(map[string]int64{"cus_A": 5})
	r.double.InjectMeterEvent("api_calls", "cus_A", 2, r.now.Add(-80*time.Minute))
	rec := r.reconciler(nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { rec.RunEvery(ctx, 50*time.Millisecond); close(done) }()
	testrig.Eventually(t, "the drift gauge", func() bool {
		return testutil.ToFloat64(rec.Metrics.UsageDriftUnits.WithLabelValues("calls")) == 2
	})
	cancel()
	<-done
}
