package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/stripe/stripe-go/v76"
	"golang.org/x/time/rate"

	"github.com/tollgate-dev/tollgate/internal/metrics"
)

// Replay limits.
const (
	// EventsRetention is how far back Stripe's events list goes.
	EventsRetention = 30 * 24 * time.Hour
	// replayPage is the events listed per request (Stripe's maximum).
	replayPage = 100
	// maxListTypes is how many names Stripe's events list takes in types[].
	maxListTypes = 20
	// DefaultReplayRate is how many events per second a replay applies:
	// each costs a few Stripe reads, which share the account's rate limit
	// with usage reporting and the billing API.
	DefaultReplayRate = 10
)

// Replay results beyond the delivery results.
const (
	resultWouldApply = "would_apply" // dry run: the ledger has not taken it
)

// ReplayResults are the result labels of tollgate_webhook_replayed_total.
var ReplayResults = []string{resultProcessed, resultDuplicate, resultIgnored, resultFailed, resultBusy, resultInvalid}

// EventLister pages through Stripe's events list; *StripeAPI is one.
type EventLister interface {
	// ListEvents returns one page of at most limit events of these types
	// (all when empty) created at or after since, newest first, after the
	// event with id after ("" for the first page), and whether more pages
	// follow.
	ListEvents(ctx context.Context, since time.Time, types []string, after string, limit int) ([]*stripe.Event, bool, error)
}

// ListEvents implements EventLister with one request of stripe-go's
// event.List (created[gte], types[], starting_after, limit).
func (s *StripeAPI) ListEvents(ctx context.Context, since time.Time, types []string, after string, limit int) ([]*stripe.Event, bool, error) {
	p := &stripe.EventListParams{CreatedRange: &stripe.RangeQueryParams{GreaterThanOrEqual: since.Unix()}}
	p.Context = ctx
	p.Limit = stripe.Int64(int64(limit))
	p.Single = true
	if after != "" {
		p.StartingAfter = stripe.String(after)
	}
	if len(types) > 0 {
		p.Types = stripe.StringSlice(types)
	}
	it := s.api.Events.List(p)
	var out []*stripe.Event
	for it.Next() {
		out = append(out, it.Event())
	}
	if err := it.Err(); err != nil {
		return out, false, err
	}
	more := false
	if l := it.EventList(); l != nil {
		more = l.HasMore
	}
	return out, more, nil
}

// ReplayOptions configure a Replayer.
type ReplayOptions struct {
	// Options are the webhook's: Store, Ledger and Stripe are required
	// (replay re-reads every object, so there is no trusted payload mode);
	// Queue, Deliveries, timeouts, Metrics and Logger as for the endpoint.
	// Secrets are not used.
	Options
	Events EventLister
	// Rate is how many events per second are applied (default
	// DefaultReplayRate); events the ledger has taken cost no Stripe call
	// and are not paced.
	Rate float64
	// PageSize is the events listed per request (default and at most 100,
	// Stripe's maximum).
	PageSize int
	// Progress, when set, is told after every page.
	Progress func(ReplayProgress)
}

// ReplayProgress is where a replay is.
type ReplayProgress struct {
	Pages, Listed, Applied, Failed int
}

// ReplayedEvent is one event a replay did not find already taken.
type ReplayedEvent struct {
	Event    string    `json:"event"`
	Type     string    `json:"type"`
	Customer string    `json:"customer,omitempty"`
	Created  time.Time `json:"created"`
	Result   string    `json:"result"`
	Error    string    `json:"error,omitempty"`
}

// ReplayReport says what one replay did.
type ReplayReport struct {
	Since  time.Time `json:"since"`
	DryRun bool      `json:"dry_run"`
	Pages  int       `json:"pages"`
	Listed int       `json:"listed"` // handled events Stripe listed
	// Results counts the listed events by result: processed (the ledger
	// had not taken it: applied now), duplicate (taken before), ignored,
	// failed, busy (another delivery holds it right now), invalid, and
	// would_apply in a dry run.
	Results map[string]int  `json:"results"`
	Events  []ReplayedEvent `json:"events"` // every listed event but the duplicates
	Took    time.Duration   `json:"-"`
	// oldestUnapplied is the created time of the oldest event that failed,
	// the point the next background run must list from again.
	oldestUnapplied time.Time
}

// Failures is how many listed events could not be applied (failed or
// invalid): a reason to run again, or to look.
func (r ReplayReport) Failures() int { return r.Results[resultFailed] + r.Results[resultInvalid] }

// Replayer applies the handled events of Stripe's events list that the
// ledger has not taken: a webhook lost on the way, or one Stripe gave up
// on, takes effect on a replay. It goes through the same ledger and
// processing as the endpoint, so an event replayed while its webhook
// arrives takes effect once.
type Replayer struct {
	o       ReplayOptions
	p       *processor
	log     *slog.Logger
	metrics *metrics.Metrics
	now     func() time.Time
	types   []string
}

// NewReplayer returns a Replayer.
func NewReplayer(o ReplayOptions) (*Replayer, error) {
	if o.Store == nil || o.Ledger == nil || o.Stripe == nil || o.Events == nil {
		return nil, errors.New("webhook: replay needs Store, Ledger, Stripe and Events")
	}
	r := &Replayer{o: o, log: o.Logger, metrics: o.Metrics, now: o.Now}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.metrics == nil {
		r.metrics = metrics.New()
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.o.Rate <= 0 {
		r.o.Rate = DefaultReplayRate
	}
	if r.o.PageSize <= 0 || r.o.PageSize > replayPage {
		r.o.PageSize = replayPage
	}
	r.p = newProcessor(o.Options, r.log, r.metrics, r.now)
	if types := HandledTypes(); len(types) <= maxListTypes {
		r.types = types
	}
	for _, res := range ReplayResults {
		r.metrics.WebhookReplayed.WithLabelValues(res)
	}
	return r, nil
}

// Run lists every handled event created since since, newest first, and
// applies each one the ledger has not taken; with dryRun it only reports
// which it would apply. A listing failure (after stripe-go's own retries)
// ends the run with the report so far and an error naming the page; a
// failure to apply one event is counted and the run goes on. Running
// again is always safe.
func (r *Replayer) Run(ctx context.Context, since time.Time, dryRun bool) (ReplayReport, error) {
	start := r.now()
	rep := ReplayReport{Since: since.UTC(), DryRun: dryRun, Results: map[string]int{}}
	lim := rate.NewLimiter(rate.Limit(r.o.Rate), 1)
	after := ""
	for {
		page, more, err := r.o.Events.ListEvents(ctx, since, r.types, after, r.o.PageSize)
		if err != nil {
			rep.Took = r.now().Sub(start)
			return rep, fmt.Errorf("webhook: replay: list events (page %d%s): %w", rep.Pages+1, afterText(after), err)
		}
		rep.Pages++
		for _, ev := range page {
			if err := r.one(ctx, ev, dryRun, lim, &rep); err != nil {
				rep.Took = r.now().Sub(start)
				return rep, err
			}
		}
		if r.o.Progress != nil {
			r.o.Progress(ReplayProgress{Pages: rep.Pages, Listed: rep.Listed, Applied: rep.Results[resultProcessed],
				Failed: rep.Failures()})
		}
		if !more || len(page) == 0 {
			break
		}
		after = page[len(page)-1].ID
	}
	rep.Took = r.now().Sub(start)
	return rep, nil
}

func afterText(after string) string {
	if after == "" {
		return ""
	}
	return ", after " + after
}

// one replays one listed event. Only a cancelled context stops the run.
func (r *Replayer) one(ctx context.Context, ev *stripe.Event, dryRun bool, lim *rate.Limiter, rep *ReplayReport) error {
	if _, ok := handled[string(ev.Type)]; !ok {
		return nil // listed without a types filter
	}
	rep.Listed++
	start := time.Now()
	body, _ := json.Marshal(ev)
	j, err := newJob(ev, body)
	if err == nil {
		err = r.p.apply.prepare(j)
	}
	var out outcome
	switch {
	case err != nil:
		j = &job{id: ev.ID, typ: string(ev.Type)}
		out = outcome{result: resultInvalid, err: err}
	default:
		out, err = r.take(ctx, j, dryRun, lim)
		if err != nil {
			return err
		}
	}
	rep.Results[out.result]++
	if !dryRun {
		r.metrics.WebhookReplayed.WithLabelValues(out.result).Inc()
	}
	if out.result == resultDuplicate {
		return nil
	}
	e := ReplayedEvent{Event: j.id, Type: j.typ, Customer: j.customer, Created: time.Unix(ev.Created, 0).UTC(), Result: out.result}
	if out.err != nil {
		e.Error = out.err.Error()
		if out.result == resultFailed || out.result == resultInvalid {
			if rep.oldestUnapplied.IsZero() || e.Created.Before(rep.oldestUnapplied) {
				rep.oldestUnapplied = e.Created
			}
		}
	}
	rep.Events = append(rep.Events, e)
	if dryRun {
		return nil
	}
	level := slog.LevelInfo
	if out.result == resultFailed || out.result == resultInvalid {
		level = slog.LevelWarn
	}
	r.log.Log(ctx, level, "webhook: replayed event", "event", e.Event, "type", e.Type, "customer", e.Customer,
		"result", e.Result, "err", e.Error)
	if l := r.o.Deliveries; l != nil {
		writeLog(ctx, l, r.log, Delivery{Event: e.Event, Type: e.Type, Customer: e.Customer, Result: e.Result,
			Error: e.Error, Source: SourceReplay, DurationMS: float64(time.Since(start).Microseconds()) / 1000})
	}
	return nil
}

// take applies one event through the ledger, or in a dry run reports what
// the ledger holds. An event the ledger has done is answered without a
// claim or a wait for the rate limiter.
func (r *Replayer) take(ctx context.Context, j *job, dryRun bool, lim *rate.Limiter) (outcome, error) {
	state, err := r.p.ledger.State(ctx, j.id)
	switch {
	case err != nil:
		return outcome{result: resultFailed, err: err}, ctx.Err()
	case state == doneValue:
		return outcome{result: resultDuplicate}, nil
	case dryRun && state == "locked":
		return outcome{result: resultBusy}, nil
	case dryRun:
		return outcome{result: resultWouldApply}, nil
	}
	if err := lim.Wait(ctx); err != nil {
		return outcome{}, err
	}
	out := r.p.process(ctx, j)
	return out, ctx.Err()
}
