package webhook

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/tollgate-dev/tollgate/internal/metrics"
)

// processor gives verified events their effect through the ledger.
type processor struct {
	ledger                                      Ledger
	apply                                       applier
	queue                                       *Queue // nil: no forwarding
	processTimeout, dedupTTL, busyWait, lockTTL time.Duration
	log                                         *slog.Logger
}

// newProcessor fills in the defaults of o's processing settings.
func newProcessor(o Options, log *slog.Logger, m *metrics.Metrics, now func() time.Time) *processor {
	p := &processor{ledger: o.Ledger, queue: o.Queue, processTimeout: o.ProcessTimeout, dedupTTL: o.DedupTTL,
		busyWait: o.BusyWait, log: log}
	if p.processTimeout <= 0 {
		p.processTimeout = 30 * time.Second
	}
	if p.dedupTTL <= 0 {
		p.dedupTTL = 720 * time.Hour
	}
	if p.busyWait <= 0 {
		p.busyWait = 5 * time.Second
	}
	p.lockTTL = p.processTimeout + lockMargin
	links := &linker{store: o.Store, owners: o.Owners, log: log, metrics: m}
	if o.Stripe != nil {
		p.apply = &refetch{store: o.Store, api: o.Stripe, now: now, log: log, links: links}
	} else {
		p.apply = &payload{store: o.Store, log: log, links: links}
	}
	return p
}

// process gives one verified event its effect at most once per event id
// and at least once per successful answer:
//
//   - Claim (SET NX with the lock TTL): only one delivery, on any replica,
//     processes an event at a time.
//   - Done: the event already took effect; answer 200 and do nothing.
//   - Busy: another delivery holds the lock. Answering 200 now would be
//     wrong, because that delivery may still fail (or its replica die) and
//     Stripe would then never retry this one. So this delivery waits, up to
//     BusyWait, for the other to finish: done → 200 duplicate; released
//     after a failure → it claims and processes the event itself; still
//     running → 503, and Stripe retries.
//   - A replica that dies mid-event leaves a lock without a done marker; it
//     expires after ProcessTimeout+10s and Stripe's retry processes the
//     event.
//
// The webhook endpoint and replay share it, so an event Stripe posts and
// the same event taken from Stripe's events list are one event to the
// ledger.
func (p *processor) process(ctx context.Context, j *job) outcome {
	if j.kind == kindNone && p.queue == nil {
		// Nothing to do and nothing to forward: no store round trip, so an
		// unhandled type is answered 200 even while Redis is away.
		return outcome{status: http.StatusOK, result: resultIgnored}
	}
	deadline := time.Now().Add(p.busyWait)
	for {
		state, token, err := p.ledger.Claim(ctx, j.id, p.lockTTL)
		switch {
		case err != nil:
			return failed(err)
		case state == Done:
			return outcome{status: http.StatusOK, result: resultDuplicate}
		case state == Claimed:
			return p.run(ctx, j, token)
		case !time.Now().Before(deadline):
			return outcome{status: http.StatusServiceUnavailable, result: resultBusy, code: "in_progress",
				msg: "This event is being processed by another delivery; retry later.",
				err: errors.New("event locked by another delivery")}
		}
		t := time.NewTimer(busyPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return failed(ctx.Err())
		case <-t.C:
		}
	}
}

// run processes a claimed event. It is not cut short when Stripe hangs up:
// an effect half-written would only be redone by the retry.
func (p *processor) run(ctx context.Context, j *job, token string) outcome {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.processTimeout)
	defer cancel()
	result, err := p.apply.apply(pctx, j)
	if err == nil && p.queue != nil {
		// Queued before the done marker: a crash in between re-queues on
		// Stripe's retry (at least once), never loses the forward.
		err = p.queue.Enqueue(pctx, j.id, j.typ, j.body)
	}
	if err != nil {
		if rerr := p.ledger.Release(pctx, j.id, token); rerr != nil {
			// The lock then expires on its own.
			err = errors.Join(err, rerr)
		}
		return failed(err)
	}
	if err := p.ledger.Done(pctx, j.id, p.dedupTTL); err != nil {
		// The effect is stored; a redelivery would only redo it
		// (re-fetching is idempotent). Not worth a Stripe retry.
		p.log.Warn("webhook: could not mark event done", "event", j.id, "err", err)
	}
	return outcome{status: http.StatusOK, result: result}
}

func failed(err error) outcome {
	return outcome{status: http.StatusInternalServerError, result: resultFailed, code: "processing_failed",
		msg: "The event could not be processed; Stripe will retry.", err: err}
}
