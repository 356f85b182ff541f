package meter

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/lease"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/internal/store"
)

// DefaultReconcileRate is how many meter event summaries a reconciliation
// reads from Stripe per second: they share the account's rate limit with
// usage reporting.
const DefaultReconcileRate = 20

// ReconcileRow is one customer and meter of a reconciliation.
type ReconcileRow struct {
	Customer string `json:"customer"`
	Meter    string `json:"meter"`
	Counted  int64  `json:"counted"`  // tollgate counted (in Redis)
	Pending  int64  `json:"pending"`  // of which not reported yet
	Parked   int64  `json:"parked"`   // of which Stripe refused for good
	Reported int64  `json:"reported"` // of which Stripe accepted
	// Stripe is Stripe's own meter event summary for the period; nil when
	// it was not compared (Note says why).
	Stripe *int64 `json:"stripe"`
	// Drift is Stripe − (Counted − Pending): positive when Stripe holds
	// units tollgate did not report (billed twice, or sent by something
	// else), negative when units tollgate counted and finished with are
	// missing in Stripe (parked, or lost).
	Drift int64  `json:"drift"`
	Note  string `json:"note,omitempty"`
	// Problem is set when the row could not be compared for a reason an
	// operator must fix (no such meter in Stripe, a count meter, Stripe
	// failing).
	Problem bool `json:"problem,omitempty"`
}

// ReconcileReport is one reconciliation.
type ReconcileReport struct {
	Period string         `json:"period"`
	From   time.Time      `json:"from"`
	To     time.Time      `json:"to"`
	Rows   []ReconcileRow `json:"rows"`
	// Compared is how many rows were compared with Stripe.
	Compared int `json:"compared"`
	Drifting int `json:"drifting"`
	Problems int `json:"problems"`
	// DriftUnits is, per configured meter, the sum over customers of
	// |drift| (tollgate_usage_drift_units).
	DriftUnits map[string]int64 `json:"drift_units"`
}

// OK reports whether every row agreed with Stripe.
func (r ReconcileReport) OK() bool { return r.Drifting == 0 && r.Problems == 0 }

// Reconciler compares, per customer and meter, the units tollgate counted
// and reported with Stripe's meter event summaries.
type Reconciler struct {
	Redis     redis.UniversalClient
	Keys      store.Keys
	Config    config.Metering
	Summaries Summaries
	// Rate is the Stripe calls per second (default DefaultReconcileRate).
	Rate float64
	// Progress, when set, is told after each row compared.
	Progress func(done, total int)
	// Metrics receives tollgate_usage_drift_units from RunEvery.
	Metrics *metrics.Metrics
	Log     *slog.Logger
	Now     func() time.Time
}

// Run reconciles a named period (PeriodCurrent, PeriodPrevious).
func (r *Reconciler) Run(ctx context.Context, period string) (ReconcileReport, error) {
	from, to, err := Period(period, r.now())
	if err != nil {
		return ReconcileReport{}, err
	}
	rep, err := r.RunRange(ctx, from, to)
	rep.Period = period
	return rep, err
}

// RunRange reconciles the windows that start in [from, to), whole hours.
// Failing to read Redis or Stripe's meters ends it with an error; a
// failure for one row marks that row a problem and goes on.
func (r *Reconciler) RunRange(ctx context.Context, from, to time.Time) (ReconcileReport, error) {
	rep := ReconcileReport{From: from.UTC(), To: to.UTC(), Rows: []ReconcileRow{}, DriftUnits: map[string]int64{}}
	names := make([]string, 0, len(r.Config.Meters))
	for name := range r.Config.Meters {
		names = append(names, name)
		rep.DriftUnits[name] = 0
	}
	sort.Strings(names)
	usage, err := ReadPeriod(ctx, r.Redis, r.Keys, r.Config.Window, names, from, to)
	if err != nil {
		return rep, err
	}
	var stripeMeters map[string]StripeMeter
	if len(usage) > 0 && to.After(from) {
		if stripeMeters, err = r.Summaries.Meters(ctx); err != nil {
			return rep, err
		}
	}
	lim := rate.NewLimiter(rate.Limit(r.rate()), 1)
	for i, u := range usage {
		row := ReconcileRow{Customer: u.Customer, Meter: u.Meter, Counted: u.Counted, Pending: u.Pending,
			Parked: u.Parked, Reported: u.Reported()}
		if err := r.compare(ctx, &row, stripeMeters, from, to, lim); err != nil {
			return rep, err
		}
		rep.add(row)
		if r.Progress != nil {
			r.Progress(i+1, len(usage))
		}
	}
	return rep, nil
}

// compare fills in Stripe's side of one row; only a cancelled context is
// an error.
func (r *Reconciler) compare(ctx context.Context, row *ReconcileRow, meters map[string]StripeMeter, from, to time.Time, lim *rate.Limiter) error {
	cfg := r.Config.Meters[row.Meter]
	switch {
	case !to.After(from):
		row.Note = "empty period: nothing to compare yet"
		return nil
	case cfg.Mode == config.ModeUsageRecords:
		row.Note = "usage_records: Stripe keeps no meter event summaries for them; not compared"
		return nil
	}
	sm, ok := meters[cfg.EventName]
	switch {
	case !ok:
		row.Note, row.Problem = fmt.Sprintf("no Billing Meter with event_name %q in Stripe", cfg.EventName), true
		return nil
	case sm.Formula != "" && sm.Formula != "sum":
		row.Note, row.Problem = fmt.Sprintf("Billing Meter %s aggregates by %s: Stripe bills the number of events, not units", sm.ID, sm.Formula), true
		return nil
	}
	if err := lim.Wait(ctx); err != nil {
		return err
	}
	v, err := r.Summaries.Sum(ctx, sm.ID, row.Customer, from, to)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		row.Note, row.Problem = "stripe: "+err.Error(), true
		return nil
	}
	if v != math.Trunc(v) || math.Abs(v) > 1<<53 {
		row.Note, row.Problem = fmt.Sprintf("Stripe's summary %v is not a whole number of units", v), true
		return nil
	}
	n := int64(v)
	row.Stripe = &n
	row.Drift = n - (row.Counted - row.Pending)
	return nil
}

func (rep *ReconcileReport) add(row ReconcileRow) {
	rep.Rows = append(rep.Rows, row)
	if row.Stripe != nil {
		rep.Compared++
	}
	if row.Problem {
		rep.Problems++
	}
	if row.Drift != 0 {
		rep.Drifting++
		rep.DriftUnits[row.Meter] += max(row.Drift, -row.Drift)
	}
}

func (r *Reconciler) rate() float64 {
	if r.Rate > 0 {
		return r.Rate
	}
	return DefaultReconcileRate
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// RunEvery reconciles the current month every interval on whichever
// replica takes the "reconcile" lease first, and sets
// tollgate_usage_drift_units for every configured meter, until ctx ends.
func (r *Reconciler) RunEvery(ctx context.Context, interval time.Duration) {
	lease.Every(ctx, interval, lease.Redis(r.Redis, r.Keys.Global("lease", "reconcile")), r.background)
}

func (r *Reconciler) background(ctx context.Context) {
	log := r.Log
	if log == nil {
		log = slog.Default()
	}
	rep, err := r.Run(ctx, PeriodCurrent)
	if err != nil {
		log.Warn("metering: usage reconciliation failed", "err", err)
		return
	}
	for name, units := range rep.DriftUnits {
		r.Metrics.UsageDriftUnits.WithLabelValues(name).Set(float64(units))
	}
	if !rep.OK() {
		log.Warn("metering: usage drifts from Stripe's meter event summaries (tollgate usage -reconcile shows it)",
			"from", rep.From, "to", rep.To, "drifting", rep.Drifting, "problems", rep.Problems, "drift_units", rep.DriftUnits)
		return
	}
	log.Info("metering: usage agrees with Stripe", "from", rep.From, "to", rep.To, "compared", rep.Compared)
}
