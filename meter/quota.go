package meter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/internal/store"
)

// Errors of Reserve.
var (
	// ErrQuotasClosed is returned by Reserve after Close.
	ErrQuotasClosed = errors.New("meter: quotas closed")
	// ErrClaimUnits is a claim of more than MaxUnits (the proxy never
	// makes one: a route's reserve is at most metering.max_units_per_request).
	ErrClaimUnits = errors.New("meter: a quota claim is more than meter.MaxUnits")
)

// UsedFunc reads a customer's usage of a meter since a time; (*Meter).Used
// is one. A quota ledger is opened from it.
type UsedFunc func(ctx context.Context, customer, meter string, since time.Time) (int64, error)

// QuotaExceeded is Reserve's answer when the quota cannot pay for a
// request.
type QuotaExceeded struct {
	Limit int64
	// Used is what the period has used or holds, on every replica.
	Used      int64
	PeriodEnd time.Time
	// Held is what other replicas hold: unused units of theirs come back
	// within a sync interval, so a request may succeed again before the
	// period ends.
	Held int64
}

func (e *QuotaExceeded) Error() string {
	return fmt.Sprintf("meter: quota exceeded: %d of %d used or held", e.Used, e.Limit)
}

// Claim is a request's cost against a customer's quota of a meter.
type Claim struct {
	Customer, Meter        string
	Limit                  int64
	PeriodStart, PeriodEnd time.Time
	Units                  int64 // at least 1
	// Memo, when not nil, keeps the customer's share from one reservation
	// to the next (see Memo): used only when it is Customer's, and it must
	// only ever be used with these Quotas.
	Memo *Memo
}

// QuotaOptions configure Quotas.
type QuotaOptions struct {
	Redis redis.UniversalClient
	Keys  store.Keys
	// Used opens a period's ledger from what the meter has counted.
	Used UsedFunc
	// LeaseTTL is how long a share stays reserved without a word from its
	// replica; SyncInterval how often a replica reports and renews.
	LeaseTTL, SyncInterval time.Duration
	// MaxShares bounds the shares kept in memory (idle ones are evicted
	// by the sync loop beyond it).
	MaxShares int
	ReplicaID string // empty: hostname:pid:random
	Metrics   *metrics.Metrics
	Logger    *slog.Logger
	// Now is the wall clock for RateLimit resets; nil means time.Now. Lease
	// expiry runs on Redis's clock and this process's monotonic clock.
	Now func() time.Time
}

// Quotas enforces plan limits exactly, across replicas, with leases.
//
// Each (customer, meter, billing period) has a ledger in Redis: the units
// used in the period and the shares replicas hold. A replica takes a share
// of what is free in one atomic script (leaseScript) and then admits from
// memory while it lasts; a share is at least what the waiting requests need
// and about 1/64 of what is free, so it shrinks to exactly what is needed
// near the limit. A request reserves its units before it is forwarded and
// settles them when the answer says what was used. Every SyncInterval the
// replica reports the units served, renews its shares and returns the ones
// it did not use; Close returns all of them. A crashed replica's shares
// come back when their lease expires (LeaseTTL).
type Quotas struct {
	rdb     redis.UniversalClient
	keys    store.Keys
	used    UsedFunc
	ttl     time.Duration
	every   time.Duration
	max     int
	replica string
	log     *slog.Logger
	now     func() time.Time
	results map[string]prometheus.Counter
	base    time.Time // origin of the monotonic clock (mono)
	ids     atomic.Uint64

	mu     sync.RWMutex
	shares map[shareKey]*Share
	closed atomic.Bool // set under mu

	// Near the limit a share that a settled request left idle is handed
	// back at once rather than at the next sync round: kick wakes the sync
	// loop for the shares in idle.
	kick   chan struct{}
	idleMu sync.Mutex
	idle   []*Share

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type shareKey struct {
	customer, meter string
	period          int64 // period start, Unix seconds
}

func (k shareKey) String() string {
	return k.customer + "/" + k.meter + "/" + strconv.FormatInt(k.period, 10)
}

// NewQuotas starts the sync loop; Close stops it and returns every share.
func NewQuotas(o QuotaOptions) *Quotas {
	defaults(&o.Now, &o.Logger, &o.Metrics, &o.ReplicaID)
	q := &Quotas{
		rdb: o.Redis, keys: o.Keys, used: o.Used, ttl: o.LeaseTTL, every: o.SyncInterval, max: o.MaxShares,
		replica: o.ReplicaID, log: o.Logger.With("component", "quota"), now: o.Now,
		results: map[string]prometheus.Counter{}, base: time.Now(), shares: map[shareKey]*Share{},
		kick: make(chan struct{}, 1),
	}
	for _, r := range metrics.QuotaLeaseResults {
		q.results[r] = o.Metrics.QuotaLeaseRequests.WithLabelValues(r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	q.cancel = cancel
	q.wg.Add(1)
	go q.run(ctx)
	return q
}

// mono is this process's monotonic clock.
func (q *Quotas) mono() time.Duration { return time.Since(q.base) }

// Reserve holds c.Units of the customer's quota for one request. While the
// replica's share lasts it touches memory only; otherwise it takes a new
// share from Redis (one round trip, shared by the requests waiting for it).
// The answer is a *QuotaExceeded when the quota cannot pay for the request,
// another error when Redis cannot be asked. The caller settles the
// reservation with Settle exactly once.
func (q *Quotas) Reserve(ctx context.Context, c Claim) (*Share, error) {
	if c.Units > MaxUnits {
		// The requests waiting for a share add up their units.
		return nil, fmt.Errorf("%w: %d", ErrClaimUnits, c.Units)
	}
	n, limit := max(c.Units, 1), min(max(c.Limit, 0), maxQuotaUnits)
	s, err := q.share(c, true)
	for fetches := 0; err == nil; {
		s.mu.Lock()
		if s.evicted {
			s.mu.Unlock()
			s, err = q.share(c, false)
			continue
		}
		s.limit = limit
		if s.take(n) {
			s.mu.Unlock()
			return s, nil
		}
		if s.busy != nil {
			if err = s.wait(ctx, n); err != nil {
				return nil, err
			}
			continue
		}
		if fetches++; fetches > 3 {
			// Granted, but a lost lease took it back each time: give up
			// rather than loop.
			ex := s.exceeded()
			s.mu.Unlock()
			return nil, ex
		}
		granted, err := s.fetch(ctx, n)
		if err != nil {
			s.mu.Unlock()
			return nil, err
		}
		if s.take(n) {
			s.mu.Unlock()
			return s, nil
		}
		if granted == 0 {
			ex := s.exceeded()
			s.mu.Unlock()
			return nil, ex
		}
		s.mu.Unlock()
	}
	return nil, err
}

// share finds or makes the share of a (customer, meter, period): from
// the claim's memo when fromMemo is set and the memo holds that share
// (which may have been evicted since: the caller checks, under the share's
// lock, and asks again without the memo), else from the map, and keeps it
// in the memo.
func (q *Quotas) share(c Claim, fromMemo bool) (*Share, error) {
	k := shareKey{c.Customer, c.Meter, c.PeriodStart.Unix()}
	if q.closed.Load() {
		return nil, ErrQuotasClosed
	}
	memo := c.Memo.of(c.Customer) // (so its share is of c.Customer)
	if fromMemo && memo != nil {
		if s := memo.share.Load(); s != nil && s.q == q && s.key.meter == k.meter && s.key.period == k.period {
			return s, nil
		}
	}
	q.mu.RLock()
	s := q.shares[k]
	q.mu.RUnlock()
	if s == nil {
		var err error
		if s, err = q.newShare(c, k); err != nil {
			return nil, err
		}
	}
	if memo != nil {
		memo.share.Store(s)
	}
	return s, nil
}

// newShare makes the share of k, unless another request just did.
func (q *Quotas) newShare(c Claim, k shareKey) (*Share, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed.Load() {
		return nil, ErrQuotasClosed
	}
	var s *Share
	if s = q.shares[k]; s == nil {
		end := c.PeriodEnd
		if !end.After(c.PeriodStart) {
			end = c.PeriodStart.Add(45 * 24 * time.Hour)
		}
		s = &Share{q: q, key: k, start: c.PeriodStart, end: end, endNano: unixNano(end), window: end.Sub(c.PeriodStart),
			expireAt: end.Add(7 * 24 * time.Hour).Unix(),
			id:       q.replica + ":" + strconv.FormatUint(q.ids.Add(1), 36)}
		q.shares[k] = s
	}
	return s, nil
}

// Share is this replica's share of one customer's quota of one meter in
// one billing period.
//
// A request's Reserve, Settle and State read only the fields of the first
// two groups, kept in the share's first 128 bytes: two cache lines, as
// Shares are 64-byte aligned (issue 13: with 100,000 customers in a
// period, each line a request touches is a read from memory).
type Share struct {
	mu       sync.Mutex
	q        *Quotas
	limit    int64
	avail    int64 // granted, not reserved
	inflight int64 // reserved by requests not settled yet
	// validUntil is when the lease may have expired in Redis (monotonic):
	// the share admits nothing from avail after it.
	validUntil time.Duration
	consumed   int64 // units served in the period through this share (cumulative)
	// What the last call saw: units no share holds (free), used in the
	// period, held by other replicas.
	free int64

	waiting  int64         // units that requests wait for
	overruns int           // requests forwarded without a reservation, not settled yet (Overrun)
	endNano  int64         // end in Unix ns (unixNano), for State
	window   time.Duration // end - start, for State
	touched  bool          // reserved since the last sync
	handBack bool          // queued to be handed back at once (near the limit)
	evicted  bool
	busy     chan struct{} // closed when the lease call in flight ends
	gen      int           // lease calls finished

	key           shareKey
	id            string // the lease's name in the ledger
	start, end    time.Time
	expireAt      int64 // of the ledger keys, Unix s
	reported      int64 // of which the ledger acknowledged
	seq           int64 // of the last lease call
	leased        bool  // the ledger holds units for this share
	used, others  int64
	idle          int           // sync rounds without a reservation
	damaged       error         // the last call found the ledger damaged (ErrCorrupt)
	loggedCorrupt time.Duration // when a damaged ledger was last logged (monotonic; 0 never)
}

// take reserves n units from the share, if it holds them and its lease is
// certainly still valid.
func (s *Share) take(n int64) bool {
	if s.avail < n || s.q.mono() >= s.validUntil {
		return false
	}
	s.avail -= n
	s.inflight += n
	s.touched = true
	return true
}

// usable is what the share can admit from without asking Redis.
func (s *Share) usable() int64 {
	if s.q.mono() >= s.validUntil {
		return 0
	}
	return s.avail
}

// wait waits (s.mu held, released on return) for the lease call in flight.
// A request the call's answer shows the quota cannot pay for is refused
// without a call of its own.
func (s *Share) wait(ctx context.Context, n int64) error {
	ch, gen := s.busy, s.gen
	s.waiting += n
	s.mu.Unlock()
	var err error
	select {
	case <-ch:
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waiting -= n
	switch {
	case err != nil || s.gen == gen:
	case s.damaged != nil:
		// The call found the ledger damaged: so would this request's own.
		err = s.damaged
	case s.free < n-s.usable():
		err = s.exceeded()
	}
	return err
}

// fetch asks the ledger (s.mu held, released during the call) for at least
// what n still needs, and for the other waiting requests' units too.
func (s *Share) fetch(ctx context.Context, n int64) (int64, error) {
	need := max(1, n-s.usable())
	c := s.newCall(need, need+s.waiting)
	s.mu.Unlock()
	r, err := s.q.grant(ctx, c)
	s.mu.Lock()
	s.finish(c, r, err)
	if err != nil {
		return 0, err
	}
	if r.status == leaseStale {
		return 0, fmt.Errorf("meter: quota lease %s: call %d overtaken", s.key, c.seq)
	}
	return r.granted, nil
}

// newCall snapshots the share for a lease call and marks it busy (s.mu
// held): one call per share at a time, because it sets what the share
// holds.
func (s *Share) newCall(need, want int64) *leaseCall {
	s.busy = make(chan struct{})
	s.seq++
	return &leaseCall{s: s, seq: s.seq, cum: s.consumed, base: s.reported, hold: satAdd(s.avail, s.inflight),
		need: need, want: min(want, maxQuotaUnits), limit: s.limit, sent: s.q.mono()}
}

// finish applies a lease call's answer (s.mu held) and wakes its waiters.
func (s *Share) finish(c *leaseCall, r leaseReply, err error) {
	close(s.busy)
	s.busy = nil
	s.gen++
	s.q.count(c, r, err)
	if errors.Is(err, ErrCorrupt) {
		s.corrupt(err)
		return
	}
	if err == nil {
		s.damaged = nil
	}
	if err == nil && r.status == leaseMissing && c.need == 0 {
		// The ledger is gone (its period ended a week ago, or Redis lost
		// it): nothing to report to or hold. A request opens it again from
		// the meter's count.
		s.reported, s.avail, s.leased = s.consumed, 0, false
		return
	}
	if err != nil || r.status != leaseApplied {
		return
	}
	s.reported = max(s.reported, c.cum)
	s.validUntil = c.sent + s.q.ttl
	if lost := c.hold - r.backed; lost > 0 {
		// The lease had expired (Redis unreachable for longer than its TTL)
		// and the pool could not hold all of it again: what is not in
		// flight is gone.
		s.avail -= min(lost, s.avail)
	}
	s.avail += r.granted
	s.leased = r.backed+r.granted > 0
	s.free, s.used, s.others = r.free, r.used, r.others
}

// corrupt fails the share closed at once (s.mu held) when its ledger is
// damaged: nothing more is admitted from memory until a call succeeds again
// (requests in flight still settle). It is logged at error, at most once a
// minute per share.
func (s *Share) corrupt(err error) {
	s.avail, s.damaged = 0, err
	if now := s.q.mono(); s.loggedCorrupt == 0 || now-s.loggedCorrupt >= time.Minute {
		s.loggedCorrupt = max(now, 1)
		s.q.log.Error(msgLedgerCorrupt, "customer", s.key.customer, "meter", s.key.meter,
			"period_start", s.start.UTC(), "err", err)
	}
}

// msgLedgerCorrupt is the log line of a damaged quota ledger.
const msgLedgerCorrupt = "quota: ledger is not valid; the customer's limited routes fail closed (503, or fail_open) until the field named is repaired"

func (s *Share) exceeded() *QuotaExceeded {
	return &QuotaExceeded{Limit: s.limit, Used: s.limit - s.free - s.usable(), PeriodEnd: s.end, Held: s.others}
}

// Settle ends a reservation of reserved units: used units were served (0
// when the answer was denied, failed or not billed). Unused units go back
// to the share; units beyond the reservation are taken from it as far as it
// has them, and beyond that overrun the quota (the ledger learns it at the
// next sync or grant, and the next request is refused).
func (s *Share) Settle(reserved, used int64) { s.settle(reserved, used, 0) }

// Overrun is for a request forwarded although Reserve refused it (shadow
// mode, which bills what it does not enforce). It reserves nothing; the
// request ends with SettleOverrun, whose units overrun the quota as in
// Settle, so that the ledger, and with it every route and replica that
// enforces the meter, counts what was served. Until then the share stays
// in memory (it is not evicted with units unreported).
func (q *Quotas) Overrun(c Claim) (*Share, error) {
	for fromMemo := true; ; fromMemo = false {
		s, err := q.share(c, fromMemo)
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		if !s.evicted {
			s.limit = min(max(c.Limit, 0), maxQuotaUnits)
			s.overruns++
			s.touched = true
			s.mu.Unlock()
			return s, nil
		}
		s.mu.Unlock()
	}
}

// SettleOverrun ends an Overrun: used units were served.
func (s *Share) SettleOverrun(used int64) { s.settle(0, used, 1) }

// Sums are saturating (issue 9): used is at most MaxTotal, and what the
// share served stops at MaxTotal, which closes any quota; a reservation
// is at most what is in flight, so no caller can make units out of nothing.
func (s *Share) settle(reserved, used int64, overruns int) {
	used = min(max(used, 0), MaxTotal)
	s.mu.Lock()
	s.overruns -= overruns
	reserved = min(max(reserved, 0), s.inflight)
	s.inflight -= reserved
	if used <= reserved {
		s.avail += reserved - used
	} else {
		s.avail -= min(s.avail, used-reserved)
	}
	s.consumed = satAdd(s.consumed, used)
	// Near the limit, units a released request leaves on an idle share
	// could be all another replica needs: hand them back now.
	kick := s.avail > 0 && s.inflight == 0 && s.waiting == 0 && s.free < shareDivisor && !s.handBack
	s.handBack = s.handBack || kick
	s.mu.Unlock()
	if kick {
		s.q.handBack(s)
	}
}

// QuotaState is a quota as one replica last saw it.
type QuotaState struct {
	Limit int64
	// Remaining is free in the ledger plus this replica's unreserved units.
	Remaining int64
	// Window is the billing period's length, Reset the time left in it.
	Window, Reset time.Duration
}

// State is the quota as this replica last saw it.
func (s *Share) State() QuotaState {
	s.mu.Lock()
	limit, remaining := s.limit, max(0, s.free+s.usable())
	s.mu.Unlock()
	return QuotaState{Limit: limit, Remaining: remaining, Window: s.window, Reset: s.resetAt(s.q.now())}
}

// resetAt is max(0, end - now), as Time.Sub gives it, in nanoseconds: end
// has no monotonic reading, and Time.Sub of one takes the slow way, on
// every answer (issue 13).
func (s *Share) resetAt(now time.Time) time.Duration {
	if s.endNano == math.MaxInt64 {
		return max(0, s.end.Sub(now)) // beyond 2262: only a corrupt period
	}
	return max(0, time.Duration(s.endNano-unixNano(now)))
}

// unixNano is t in nanoseconds since the epoch, held to 0..MaxInt64
// (Time.UnixNano is undefined outside 1678–2262): a period end from Stripe
// is well inside, but a corrupt one must not wrap around, and the
// difference of two such values cannot overflow.
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(epoch):
		return 0
	case t.After(lastNano):
		return math.MaxInt64
	}
	return t.UnixNano()
}

var epoch, lastNano = time.Unix(0, 0), time.Unix(0, math.MaxInt64)

// grant runs a request-path lease call; a missing ledger (the period's
// first request, or a lost key) is opened from the meter's count.
func (q *Quotas) grant(ctx context.Context, c *leaseCall) (leaseReply, error) {
	r, err := q.call(ctx, c)
	if err != nil || r.status != leaseMissing {
		return r, err
	}
	n, err := q.used(ctx, c.s.key.customer, c.s.key.meter, c.s.start)
	if err != nil {
		return r, fmt.Errorf("meter: open quota ledger %s: %w", c.s.key, err)
	}
	c.init = strconv.FormatInt(min(max(n, 0), maxQuotaUnits), 10) // Used saturates, a caller's func may not
	return q.call(ctx, c)
}

func (q *Quotas) count(c *leaseCall, r leaseReply, err error) {
	switch {
	case errors.Is(err, ErrCorrupt):
		q.results["corrupt"].Inc()
	case err != nil:
		q.results["error"].Inc()
	case c.final:
		q.results["returned"].Inc()
	case c.need == 0:
		q.results["synced"].Inc()
	case r.granted > 0:
		q.results["granted"].Inc()
	case r.status == leaseApplied:
		q.results["exhausted"].Inc()
	}
}
