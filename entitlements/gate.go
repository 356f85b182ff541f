package entitlements

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/metrics"
)

// Source loads a customer's state from Stripe; *StripeSource is one.
type Source interface {
	// Fetch returns the customer's state as Stripe has it now, or
	// ErrUnknownCustomer.
	Fetch(ctx context.Context, customer string) (*State, error)
}

// Options configure a Gate.
type Options struct {
	Store   Store
	Source  Source     // nil: a customer missing from the store is unsubscribed
	Grants  GrantStore // nil: no operator grants
	Plans   map[string]*config.Plan
	Gating  config.Gating
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	Now     func() time.Time // nil: time.Now
}

// Gate makes every entitlement decision of one replica.
type Gate struct {
	store   Store
	source  Source
	grants  GrantStore
	plans   *Plans
	rules   Rules
	cfg     config.Gating
	cache   *cache
	loads   singleflight.Group
	metrics *metrics.Metrics
	// cacheResults' counters of tollgate_entitlement_cache_total, bound at
	// start and indexed by the result's constant: a label lookup on every
	// decision costs a lock and a hash.
	results [len(cacheResults)]prometheus.Counter
	log     *slog.Logger
	now     func() time.Time
	// confirmed is when the watcher last proved the cache current: every
	// change announced before it has been applied (unix nanoseconds; 0
	// until the first proof). It is kept while the feed is down: decisions
	// on last-known state age from it (issue 11: resetting it made them
	// age from each customer's load instead).
	confirmed atomic.Int64
	// live is set while the change feed is subscribed and has confirmed
	// the cache since (readiness).
	live atomic.Bool
	// storeUp is cleared when the change feed is lost and set again when
	// the store answers a ping: stale entries are re-read on demand only
	// while it is set.
	storeUp atomic.Bool
	// announced counts the announcements the watcher has seen, so that a
	// load that raced one (read before the write, cached after the
	// announcement was skipped as "not cached") reads again.
	announced atomic.Uint64
}

// New returns a Gate; Run must be started for cross-replica updates.
func New(o Options) *Gate {
	g := &Gate{
		store:   o.Store,
		source:  o.Source,
		grants:  o.Grants,
		plans:   newGatePlans(o.Plans, o.Gating.AnyPrice),
		rules:   Rules{Grace: o.Gating.GracePeriod, UpgradeURL: o.Gating.UpgradeURL},
		cfg:     o.Gating,
		cache:   newCache(o.Gating.CacheSize),
		metrics: o.Metrics,
		log:     o.Logger,
		now:     o.Now,
	}
	if g.now == nil {
		g.now = time.Now
	}
	if g.log == nil {
		g.log = slog.Default()
	}
	if g.metrics == nil {
		g.metrics = metrics.New()
	}
	// Every result exists from start at 0 (SPEC "Metrics"), so a first
	// "unavailable" shows in rate().
	for i, r := range cacheResults {
		g.results[i] = g.metrics.EntitlementCache.WithLabelValues(r)
	}
	g.storeUp.Store(true)
	return g
}

// cacheResults are the result labels of tollgate_entitlement_cache_total.
var cacheResults = [...]string{resultHit: "hit", resultMiss: "miss", resultNegative: "negative", resultStale: "stale", resultUnavailable: "unavailable"}

const (
	resultHit = iota
	resultMiss
	resultNegative
	resultStale
	resultUnavailable
)

var (
	denyNoCustomer = &Denial{Status: http.StatusPaymentRequired, Code: "subscription_required",
		Message: "No Stripe customer is linked to this account; subscribe first."}
	denyUnavailable = &Denial{Status: http.StatusServiceUnavailable, Code: "entitlements_unavailable",
		Message: "Entitlements cannot be checked right now; try again shortly."}
)

// Decide answers whether customer may use a route that requires req.
// failOpen allows the request when the state cannot be known.
func (g *Gate) Decide(ctx context.Context, customer string, req config.Require, failOpen bool) Decision {
	return g.DecideMemo(ctx, customer, req, failOpen, nil, time.Time{})
}

// Memo keeps a customer's cache entry from one decision to the next
// (DecideMemo). The zero Memo is empty.
type Memo struct{ e atomic.Pointer[entry] }

// DecideMemo is Decide, with memo keeping the customer's cache entry from
// one decision to the next: while the cache holds that entry, a decision
// takes it from memo instead of looking the customer up (issue 13: with
// 100,000 customers cached, the lookup was a third of the request path's
// time). The decision is the one Decide makes. memo must only ever be used
// for this customer and this Gate; nil is Decide.
//
// now is the request's time on the clock the Gate was built with
// (Options.Now), for a caller that has just read that clock (the sidecar
// passes auth.Identity.At, read when the request's identity was complete):
// a clock read was a tenth of the cached request path (issue 13). The zero
// time reads the clock.
func (g *Gate) DecideMemo(ctx context.Context, customer string, req config.Require, failOpen bool, memo *Memo, now time.Time) Decision {
	if customer == "" {
		if !req.Any() {
			return Decision{} // nothing required: an unsubscribed caller may pass
		}
		return Decision{Denial: g.withUpgrade(denyNoCustomer)}
	}
	if now.IsZero() {
		now = g.now()
	}
	e := g.cached(customer, memo)
	if e != nil && e.negative() && now.UnixNano() > e.negativeUntil {
		e = nil // a negative answer expired: ask again
	}
	result := resultHit
	if e == nil {
		var err error
		if e, err = g.load(ctx, customer); err != nil {
			g.log.WarnContext(ctx, "entitlements: load failed", "customer", customer, "err", err)
			g.results[resultUnavailable].Inc()
			return g.unavailable(failOpen)
		}
		result = resultMiss
	}
	if e.negative() {
		g.results[resultNegative].Inc()
		if !req.Any() {
			return Decision{}
		}
		return Decision{Denial: g.withUpgrade(denyNoCustomer)}
	}
	age := g.age(e, now)
	if age > g.cfg.MaxStaleness {
		if e = g.reread(ctx, customer); e == nil {
			g.results[resultUnavailable].Inc()
			return g.unavailable(failOpen)
		}
		age, result = g.age(e, now), resultMiss
	}
	if age > staleAfter {
		result = resultStale
	}
	g.results[result].Inc()
	g.metrics.EntitlementAge.Observe(age.Seconds())
	d := g.rules.decide(&e.view, req, now)
	d.Age = age
	return d
}

// cached returns the customer's cache entry, from memo while the cache
// still holds the entry there, or nil.
func (g *Gate) cached(customer string, memo *Memo) *entry {
	if memo != nil {
		if e := memo.e.Load(); e != nil && !e.gone.Load() {
			return e
		}
	}
	e := g.cache.get(customer)
	if e != nil && memo != nil {
		memo.e.Store(e)
	}
	return e
}

// reread loads a customer whose cached state is too old to use, once the
// store answers again (after an outage longer than max_staleness, while the
// change feed is still reloading every cached customer: with a large cache
// that takes longer than the SPEC's 1 s). It returns nil while the store is
// known to be down, without asking it, or when the load fails.
func (g *Gate) reread(ctx context.Context, customer string) *entry {
	if !g.storeUp.Load() {
		return nil
	}
	e, err := g.load(ctx, customer)
	if err != nil || e.negative() {
		return nil
	}
	return e
}

// staleAfter is the age past which a decision counts as made on stale
// state (the feed's own health checks run every second).
const staleAfter = 5 * time.Second

func (g *Gate) unavailable(failOpen bool) Decision {
	if failOpen {
		return Decision{Status: "unknown"}
	}
	return Decision{Denial: denyUnavailable}
}

func (g *Gate) withUpgrade(d *Denial) *Denial {
	if g.rules.UpgradeURL == "" {
		return d
	}
	c := *d
	c.UpgradeURL = g.rules.UpgradeURL
	return &c
}

// age is how long before now the entry was last known to be current. (In
// nanoseconds since the epoch, as the times it is kept in: through
// time.Unix and Time.Sub, on every decision, it cost as much as the rest
// of the cache lookup, issue 13.)
func (g *Gate) age(e *entry, now time.Time) time.Duration {
	return time.Duration(now.UnixNano() - max(g.confirmed.Load(), e.loadedAt))
}

// load reads a customer not in memory: from the store, else from Stripe
// (writing what it found to the store for the other replicas). Concurrent
// requests for one customer share one load; the load is not cancelled
// when the request that started it goes away.
func (g *Gate) load(ctx context.Context, customer string) (*entry, error) {
	v, err, _ := g.loads.Do(customer, func() (any, error) {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loadTimeout)
		defer cancel()
		return g.loadNow(lctx, customer)
	})
	if err != nil {
		return nil, err
	}
	return v.(*entry), nil
}

const loadTimeout = 10 * time.Second

func (g *Gate) loadNow(ctx context.Context, customer string) (*entry, error) {
	for attempt := 0; ; attempt++ {
		seen := g.announced.Load()
		e, err := g.loadOnce(ctx, customer)
		if err != nil || attempt == 2 || g.announced.Load() == seen {
			return e, err
		}
	}
}

func (g *Gate) loadOnce(ctx context.Context, customer string) (*entry, error) {
	start := g.now()
	grants, err := g.grantsOf(ctx, customer)
	if err != nil {
		return nil, err
	}
	st, err := g.store.Get(ctx, customer)
	switch {
	case err == nil:
	case errors.Is(err, ErrNotFound) && g.source == nil:
		st = &State{Customer: customer}
	case errors.Is(err, ErrNotFound):
		if st, err = g.fetch(ctx, customer); err != nil {
			if !errors.Is(err, ErrUnknownCustomer) {
				return nil, err
			}
			if len(activeGrants(grants, start)) == 0 {
				e := &entry{view: view{stripe: noFeatures}, loadedAt: start.UnixNano(),
					negativeUntil: start.Add(g.cfg.NegativeTTL).UnixNano()}
				g.cache.put(customer, e)
				return e, nil
			}
			// Unknown to Stripe, but an operator granted it something.
			st = &State{Customer: customer}
		}
	default:
		return nil, err
	}
	e := g.entryOf(st, grants, start, true)
	g.cache.put(customer, e)
	return e, nil
}

// grantsOf reads a customer's grants (none without a grant store). It is
// read before the state, so that a grant written between the two reads is
// announced after this load began and read again (see loadNow).
func (g *Gate) grantsOf(ctx context.Context, customer string) ([]Grant, error) {
	if g.grants == nil {
		return nil, nil
	}
	return g.grants.Grants(ctx, customer)
}

// entryOf prepares a state and its grants for the cache.
func (g *Gate) entryOf(st *State, grants []Grant, loadedAt time.Time, tell bool) *entry {
	return newEntry(g.viewOf(st, grants, tell), loadedAt)
}

// fetch asks Stripe and stores the answer unless the store got a state in
// the meantime (a webhook's state is never overwritten by a lookup).
func (g *Gate) fetch(ctx context.Context, customer string) (*State, error) {
	st, err := g.source.Fetch(ctx, customer)
	if err != nil {
		return nil, fmt.Errorf("entitlements: fetch %s from Stripe: %w", customer, err)
	}
	st.Source, st.UpdatedAt = "lookup", g.now()
	var stored *State
	err = g.store.Update(ctx, customer, func(cur *State) (*State, error) {
		if cur != nil {
			stored = cur
			return cur, nil
		}
		stored = st
		return st, nil
	})
	if err != nil {
		return nil, err
	}
	return stored, nil
}

// Apply puts a state written by this replica into its own cache at once
// (the announcement reaches the other replicas), with the grants already
// cached. A customer not in memory is left to its next decision, which
// reads the state and the grants from the store, unless grants are off.
func (g *Gate) Apply(st *State) {
	cur := g.cache.get(st.Customer)
	if cur == nil && g.grants != nil {
		return
	}
	var grants []Grant
	if cur != nil {
		// The grants in force when it was cached: those expired since
		// are left out again by the new view.
		grants = cur.grants()
	}
	g.cache.put(st.Customer, g.entryOf(st, grants, g.now(), true))
}

// Forget drops a customer from this replica's cache.
func (g *Gate) Forget(customer string) { g.cache.remove(customer) }

// Live reports whether the change feed is up and has confirmed the cache.
func (g *Gate) Live() bool { return g.live.Load() }

// Cached returns the number of customers in memory.
func (g *Gate) Cached() int { return g.cache.len() }

func newGatePlans(cfg map[string]*config.Plan, anyPrice bool) *Plans {
	p := NewPlans(cfg)
	p.onlyKnown = p.onlyKnown && !anyPrice
	return p
}

// viewOf prepares a state for decisions. With tell set (a first load or a
// change, not the periodic refresh), a running subscription ignored for
// holding no configured price is logged: its customer is being denied,
// most likely because a new price is missing from plans.
func (g *Gate) viewOf(st *State, grants []Grant, tell bool) view {
	if tell {
		if ignored := ignoredSubscriptions(st, g.plans); len(ignored) > 0 {
			g.log.Warn("entitlements: a running subscription holds no price listed in plans and opens nothing; "+
				"add its price to plans, or set gating.any_price", "customer", st.Customer, "subscriptions", ignored)
		}
	}
	return newGrantedView(st, grants, g.plans, g.now())
}
