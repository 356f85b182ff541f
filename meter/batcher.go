package meter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/config"
)

// Batcher tuning. The lease TTL and the rate limit are configuration.
const (
	maxInFlight  = 16   // concurrent (customer, meter) reports, each one call at a time
	scanLimit    = 2000 // due customers read per scan
	backoffBase  = 250 * time.Millisecond
	backoffMax   = time.Minute
	statsEvery   = 10 * time.Second // the reporting replica recomputes pending units in Redis
	minScanEvery = 50 * time.Millisecond
	maxScanEvery = time.Second
)

// renewScript extends the lease only if this replica still holds it.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// releaseScript gives the lease up only if this replica holds it.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// batcher reports closed windows while this replica holds the lease.
type batcher struct {
	m      *Meter
	st     *redisStore
	send   Sender
	meters map[string]*config.Meter
	ttl    time.Duration
	grace  time.Duration // a window is reported this long after it ends
	scan   time.Duration
	pace   *pacer
	token  string

	mu      sync.Mutex
	leading bool
	busy    map[pairKey]bool
	retry   map[pairKey]retryState
	remote  map[string]int64 // units waiting in Redis per meter (while leading)
}

type retryState struct {
	failures int
	until    time.Time
}

func newBatcher(m *Meter, send Sender, cfg config.Metering) *batcher {
	return &batcher{
		m:      m,
		st:     m.st,
		send:   send,
		meters: cfg.Meters,
		ttl:    cfg.LeaseTTL,
		grace:  2 * cfg.FlushInterval,
		scan:   min(max(cfg.FlushInterval, minScanEvery), maxScanEvery),
		pace:   newPacer(cfg.RateLimit),
		token:  m.replica,
		busy:   make(map[pairKey]bool),
		retry:  make(map[pairKey]retryState),
		remote: make(map[string]int64),
	}
}

// run competes for the lease until ctx ends, and reports while it holds it.
func (b *batcher) run(ctx context.Context) {
	defer b.m.wg.Done()
	t := time.NewTicker(b.ttl / 3)
	defer t.Stop()
	for {
		if at, ok := b.acquire(ctx); ok {
			b.lead(ctx, at)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// acquire takes the free lease (SET NX PX) or confirms this replica's own.
func (b *batcher) acquire(ctx context.Context) (time.Time, bool) {
	at := time.Now()
	ok, err := b.st.rdb.SetNX(ctx, b.st.leaseKey(), b.token, b.ttl).Result()
	if err == nil && !ok {
		ok, err = b.renew(ctx)
	}
	return at, err == nil && ok
}

func (b *batcher) renew(ctx context.Context) (bool, error) {
	n, err := renewScript.Run(ctx, b.st.rdb, []string{b.st.leaseKey()}, b.token, b.ttl.Milliseconds()).Int64()
	return n == 1, err
}

// release gives the lease up at Close so that another replica reports at
// once instead of after the TTL.
func (b *batcher) release(ctx context.Context) {
	if err := releaseScript.Run(ctx, b.st.rdb, []string{b.st.leaseKey()}, b.token).Err(); err != nil {
		b.m.log.Warn("metering: releasing the report lease failed; another replica takes over within lease_ttl", "err", err)
	}
}

// lead reports until the lease is lost or ctx ends. The lease is renewed
// every TTL/3; when it cannot be confirmed before it would expire, every
// in-flight call is cancelled. Exactly-once never depends on the lease (an
// identifier is reused, never invented twice), only the rate limit and
// one-call-per-pair do.
func (b *batcher) lead(parent context.Context, acquired time.Time) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	b.setLeading(true)
	b.m.log.Info("metering: this replica now reports usage to Stripe", "replica", b.token)
	var wg sync.WaitGroup
	wg.Add(1 + maxInFlight)
	go func() {
		defer wg.Done()
		b.keepLease(ctx, cancel, acquired)
	}()
	jobs := make(chan pairJob, scanLimit)
	idle := make(chan struct{}, 1)
	for range maxInFlight {
		go func() {
			defer wg.Done()
			b.worker(ctx, jobs, idle)
		}()
	}
	b.reportLoop(ctx, jobs, idle)
	cancel()
	wg.Wait()
	for len(jobs) > 0 { // queued, never started: free them for the next leader term
		b.unclaim((<-jobs).pair)
	}
	b.setLeading(false)
	b.m.updateLocalPending()
	if parent.Err() == nil {
		b.m.log.Warn("metering: lost the report lease; another replica reports", "replica", b.token)
	}
}

// keepLease renews the lease every third of its TTL. Leadership ends at
// the lease's own deadline even while a renew is still blocked (Redis
// timeouts and retries), so that two replicas never report at once.
func (b *batcher) keepLease(ctx context.Context, lost context.CancelFunc, acquired time.Time) {
	valid := acquired.Add(b.ttl - b.ttl/10)
	expire := time.NewTimer(time.Until(valid))
	defer expire.Stop()
	t := time.NewTicker(b.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-expire.C:
			lost()
			return
		case <-t.C:
		}
		sent := time.Now()
		rctx, cancel := context.WithDeadline(ctx, valid)
		ok, err := b.renew(rctx)
		cancel()
		switch {
		case err == nil && ok:
			valid = sent.Add(b.ttl - b.ttl/10)
			expire.Reset(time.Until(valid))
		case err == nil && !ok:
			lost()
			return
		case time.Now().After(valid):
			lost()
			return
		}
	}
}

func (b *batcher) setLeading(on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.leading = on
	if !on {
		clear(b.remote)
	}
}

// isLeading reports whether this replica holds the report lease.
func (b *batcher) isLeading() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.leading
}

func (b *batcher) remotePending() map[string]int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]int64, len(b.remote))
	for k, v := range b.remote {
		out[k] = v
	}
	return out
}

// pairJob is one (customer, meter) and its closed windows, oldest first.
type pairJob struct {
	pair    pairKey
	windows []int64
}

// reportLoop scans for closed windows every scan interval, and as soon as
// a worker finds the queue empty.
func (b *batcher) reportLoop(ctx context.Context, jobs chan pairJob, idle <-chan struct{}) {
	scan := time.NewTicker(b.scan)
	defer scan.Stop()
	stats := time.NewTicker(statsEvery)
	defer stats.Stop()
	b.refreshStats(ctx)
	for {
		if len(jobs) < cap(jobs)/2 {
			b.scanOnce(ctx, jobs)
		}
		select {
		case <-ctx.Done():
			return
		case <-stats.C:
			b.refreshStats(ctx)
		case <-scan.C:
		case <-idle:
		}
	}
}

func (b *batcher) worker(ctx context.Context, jobs <-chan pairJob, idle chan<- struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-jobs:
			b.work(ctx, j)
		}
		if len(jobs) == 0 {
			select {
			case idle <- struct{}{}:
			default:
			}
		}
	}
}

// refreshStats recomputes the units waiting in Redis per meter for
// tollgate_usage_pending_units.
func (b *batcher) refreshStats(ctx context.Context) {
	rows, _, err := readUsage(ctx, b.st, false)
	if err != nil {
		return
	}
	remote := make(map[string]int64)
	var open []string
	for _, r := range rows {
		remote[r.Meter] = satAdd(remote[r.Meter], r.Pending)
		if r.Pending > 0 {
			open = append(open, r.Customer)
		}
	}
	// The sweep: a flush that died between its scripts and the due index
	// (Cluster) left open windows no scan would find.
	if err := b.st.ensureDue(ctx, slices.Compact(open)); err != nil && ctx.Err() == nil {
		b.m.log.Warn("metering: due index sweep failed", "err", err)
	}
	b.mu.Lock()
	b.remote = remote
	b.mu.Unlock()
	b.m.updateLocalPending()
}

// scanOnce queues a report for every (customer, meter) with closed windows
// that is neither queued, in flight nor backing off.
func (b *batcher) scanOnce(ctx context.Context, jobs chan<- pairJob) {
	now := b.m.now()
	cutoff := now.UnixMilli() - b.grace.Milliseconds()
	due, stale, err := b.st.dueWindows(ctx, cutoff, scanLimit)
	if err != nil {
		if ctx.Err() == nil {
			b.m.metrics.UsageReportErrors.WithLabelValues("", "store").Inc()
		}
		return
	}
	for _, cus := range stale {
		if !b.customerBusy(cus) {
			_ = b.st.refreshDue(ctx, cus)
		}
	}
	pairs := make(map[pairKey][]int64)
	var order []pairKey
	for _, d := range due {
		p := pairKey{d.customer, d.meter}
		if _, ok := pairs[p]; !ok {
			order = append(order, p)
		}
		pairs[p] = append(pairs[p], d.window)
	}
	for _, p := range order {
		if !b.claim(p, time.Now()) {
			continue
		}
		select {
		case jobs <- pairJob{p, pairs[p]}:
		default:
			b.unclaim(p) // the queue is full: next scan
			return
		}
	}
}

func (b *batcher) customerBusy(cus string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for p := range b.busy {
		if p.customer == cus {
			return true
		}
	}
	return false
}

func (b *batcher) claim(p pairKey, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.busy[p] || now.Before(b.retry[p].until) {
		return false
	}
	b.busy[p] = true
	return true
}

func (b *batcher) unclaim(p pairKey) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.busy, p)
}

// finish ends a pair's turn; a non-nil err schedules its retry with
// exponential backoff and jitter, growing only while no report goes
// through.
func (b *batcher) finish(p pairKey, progressed bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.busy, p)
	if err == nil {
		delete(b.retry, p)
		return
	}
	r := b.retry[p]
	if progressed {
		r.failures = 0
	}
	r.failures++
	d := backoffBase << min(r.failures-1, 16)
	d = min(d, backoffMax)
	d = d/2 + rand.N(d/2+1)
	r.until = time.Now().Add(d)
	b.retry[p] = r
}

func (b *batcher) work(ctx context.Context, j pairJob) {
	p := j.pair
	progressed, err := b.reportPair(ctx, p, j.windows)
	b.finish(p, progressed, err)
	if err == nil {
		if rerr := b.st.refreshDue(ctx, p.customer); rerr != nil && ctx.Err() == nil {
			b.m.log.Warn("metering: due index update failed; the next scan repairs it", "customer", p.customer, "err", rerr)
		}
	}
}

// reportPair reports the pair's closed windows in order, one call at a
// time, and stops at the first retryable failure. A window whose stored
// usage is corrupt is skipped (it stays in the index; reporting it would
// bill a guess) and the pair retried later. It reports whether any report
// was settled.
func (b *batcher) reportPair(ctx context.Context, p pairKey, windows []int64) (bool, error) {
	progressed := false
	var corrupt error
	for _, ws := range windows {
		for {
			state, it, err := b.st.begin(ctx, p.customer, p.meter, ws, b.m.now())
			if errors.Is(err, ErrCorrupt) {
				corrupt = b.badStoredUsage(ctx, p, ws, reasonCorrupt, err)
				break
			}
			if err != nil {
				return progressed, b.failed(ctx, p.meter, &SendError{Reason: "store", Err: err})
			}
			if state != beginIntent {
				break
			}
			if err := b.deliver(ctx, it); err != nil {
				return progressed, err
			}
			progressed = true
		}
	}
	return progressed, corrupt
}

// badStoredUsage logs (at error: an operator must repair it) and counts a
// window whose stored usage cannot be reported or settled, and returns err.
func (b *batcher) badStoredUsage(ctx context.Context, p pairKey, ws int64, reason string, err error) error {
	if ctx.Err() != nil {
		return err
	}
	b.m.metrics.UsageReportErrors.WithLabelValues(p.meter, reason).Inc()
	b.m.log.Error("metering: a window's stored usage is not a valid count; it is not reported until repaired",
		"customer", p.customer, "meter", p.meter, "window", time.UnixMilli(ws).UTC(), "reason", reason, "err", err)
	return err
}

// deliver sends one recorded intent and settles it: reported when Stripe
// has it, parked when Stripe refuses it for good. A retryable failure leaves
// the intent in Redis, so the retry sends the same identifier.
// staleIntentAge is how old an unsettled intent may be before it is no
// longer resent: Stripe rejects a repeated identifier (and replays an
// Idempotency-Key) only within a rolling window of at least 24 hours, so a
// resend after that could bill the same units twice. Such an intent is
// parked for an operator instead.
const staleIntentAge = 20 * time.Hour

// settleTimeout bounds the write that records a delivered report.
const settleTimeout = 2 * time.Second

func (b *batcher) deliver(ctx context.Context, it intent) error {
	if it.since > 0 && b.m.now().Sub(time.UnixMilli(it.since)) > staleIntentAge {
		return b.park(ctx, it, &SendError{Reason: "stale_intent", Permanent: true,
			Err: fmt.Errorf("first sent %s; Stripe's duplicate detection may have expired, check the meter's events before requeueing", time.UnixMilli(it.since).UTC().Format(time.RFC3339))})
	}
	err := b.sendIntent(ctx, it)
	var se *SendError
	switch {
	case err == nil || errors.Is(err, ErrAlreadyReported):
		// Stripe has the units now: record that even if shutdown has begun,
		// so the next leader does not have to resend the intent to learn it.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
		n, serr := b.st.settle(sctx, it, "", "")
		cancel()
		if serr != nil {
			return b.settleFailed(ctx, it, serr)
		}
		if n > 0 {
			b.m.metrics.UsageReportedUnits.WithLabelValues(it.meter).Add(float64(n))
		}
		return nil
	case errors.As(err, &se) && se.Permanent:
		return b.park(ctx, it, se)
	default:
		return b.failed(ctx, it.meter, err)
	}
}

func (b *batcher) sendIntent(ctx context.Context, it intent) error {
	mc, ok := b.meters[it.meter]
	if !ok || mc == nil {
		return &SendError{Reason: "unknown_meter", Permanent: true,
			Err: fmt.Errorf("meter %q is not in metering.meters", it.meter)}
	}
	if err := b.pace.wait(ctx); err != nil {
		return &SendError{Reason: "canceled", Err: err}
	}
	return b.send.Send(ctx, Report{
		Customer:   it.customer,
		Meter:      it.meter,
		Config:     *mc,
		Units:      it.units,
		Timestamp:  eventTimestamp(it.window),
		Identifier: it.identifier(),
	})
}

// ParkedReport is a report Stripe refused for good. Its units stay in
// Redis, outside the reporting queue, until an operator acts.
type ParkedReport struct {
	Customer   string    `json:"customer"`
	Meter      string    `json:"meter"`
	Window     int64     `json:"window"` // start, Unix ms
	Seq        int64     `json:"seq"`
	Units      int64     `json:"units"`
	Reason     string    `json:"reason"`
	Identifier string    `json:"identifier"`
	Message    string    `json:"message"`
	At         time.Time `json:"at"`
}

func (b *batcher) park(ctx context.Context, it intent, se *SendError) error {
	rec := ParkedReport{Customer: it.customer, Meter: it.meter, Window: it.window, Seq: it.seq, Units: it.units,
		Reason: se.Reason, Identifier: it.identifier(), Message: errorMessage(se.Err), At: time.Now().UTC()}
	js, _ := json.Marshal(rec)
	field := it.meter + ":" + strconv.FormatInt(it.window, 10) + ":" + strconv.FormatInt(it.seq, 10)
	n, err := b.st.settle(ctx, it, field, string(js))
	if err != nil {
		return b.settleFailed(ctx, it, err)
	}
	if n > 0 {
		b.m.metrics.UsageReportErrors.WithLabelValues(it.meter, se.Reason).Inc()
		b.m.log.Error("metering: Stripe refused a usage report for good; parked, see `tollgate usage`",
			"customer", it.customer, "meter", it.meter, "window", time.UnixMilli(it.window).UTC(),
			"units", n, "reason", se.Reason, "identifier", rec.Identifier, "err", se.Err)
	}
	return nil
}

// settleFailed handles an intent that could not be settled: the intent
// stays and is sent again, under the same identifier, on the next attempt.
func (b *batcher) settleFailed(ctx context.Context, it intent, err error) error {
	switch {
	case errors.Is(err, ErrCorrupt):
		return b.badStoredUsage(ctx, pairKey{it.customer, it.meter}, it.window, reasonCorrupt, err)
	case errors.Is(err, ErrOverflow):
		return b.badStoredUsage(ctx, pairKey{it.customer, it.meter}, it.window, reasonOverflow, err)
	}
	return b.failed(ctx, it.meter, &SendError{Reason: "store", Err: err})
}

// failed counts and logs a retryable failure and returns it.
func (b *batcher) failed(ctx context.Context, meter string, err error) error {
	var se *SendError
	reason := "network"
	if errors.As(err, &se) {
		reason = se.Reason
	}
	if ctx.Err() != nil || reason == "canceled" {
		return err // leadership ended or shutting down: not a failure of the report
	}
	b.m.metrics.UsageReportErrors.WithLabelValues(meter, reason).Inc()
	level := slog.LevelDebug // retries are routine
	if reason == "auth" {
		level = slog.LevelError // the Stripe key is wrong: someone must act
	}
	b.m.log.Log(ctx, level, "metering: usage report failed; will retry with the same identifier",
		"meter", meter, "reason", reason, "err", err)
	return err
}

// pacer spaces calls at a fixed rate (a token bucket of size one).
type pacer struct {
	mu       sync.Mutex
	interval time.Duration
	next     time.Time
}

func newPacer(perSecond int) *pacer {
	return &pacer{interval: time.Second / time.Duration(max(perSecond, 1))}
}

func (p *pacer) wait(ctx context.Context) error {
	p.mu.Lock()
	now := time.Now()
	at := p.next
	if at.Before(now) {
		at = now
	}
	p.next = at.Add(p.interval)
	p.mu.Unlock()
	d := time.Until(at)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
