package entitlements

import (
	"context"
	"errors"
	"time"
)

// The change feed's timing. Issue 11: a growing reconnect backoff (up to
// 5 s) kept every replica on 503 for seconds after Redis was back, so the
// feed now asks the store every reconnectInterval, a fixed short interval,
// and resubscribes as soon as it answers.
const (
	// probeInterval is how often the watcher proves the feed current; the
	// last proof is what decisions age from, so it is also how much of
	// gating.max_staleness an outage can find already spent.
	probeInterval = 250 * time.Millisecond
	// probeTimeout is how long an unanswered probe may stay so before the
	// feed is given up (a connection that hangs without closing; a killed
	// Redis closes the connection and is noticed at once). Only the
	// reconnect waits for it: decisions age from the last answered probe.
	probeTimeout = 3 * time.Second
	// reconnectInterval paces the store pings while the feed is down, and
	// the subscription attempts.
	reconnectInterval = 100 * time.Millisecond
)

// Run keeps this replica's cache current until ctx ends: it applies every
// announced change, proves the feed current every probeInterval (which
// advances the confirmation time decisions age from), reloads every cached
// customer after a reconnect, and every gating.refresh_interval as a
// backstop for a lost announcement. When the feed is lost, decisions go on
// from the last known state, aged from the last proof, until
// gating.max_staleness; meanwhile the store is pinged every
// reconnectInterval and the feed resubscribed as soon as it answers.
func (g *Gate) Run(ctx context.Context) {
	var lostAt time.Time
	for {
		attempt := time.Now()
		err := g.watch(ctx, &lostAt)
		g.live.Store(false)
		g.storeUp.Store(false)
		if ctx.Err() != nil {
			return
		}
		if lostAt.IsZero() {
			lostAt = time.Now()
			g.log.Warn("entitlements: change feed lost; deciding on last known state", "err", err,
				"max_staleness", g.cfg.MaxStaleness.String(), "confirmed_ago_ms", g.confirmedAgo().Milliseconds())
		} else {
			g.log.Debug("entitlements: change feed still down", "err", err)
		}
		// One attempt per reconnectInterval at most, then as soon as the
		// store answers.
		if !sleep(ctx, reconnectInterval-time.Since(attempt)) || !g.awaitStore(ctx) {
			return
		}
	}
}

// awaitStore pings the store every reconnectInterval until it answers; it
// reports false when ctx ended first.
func (g *Gate) awaitStore(ctx context.Context) bool {
	for {
		start := time.Now()
		pctx, cancel := context.WithTimeout(ctx, reconnectInterval)
		err := g.store.Ping(pctx)
		cancel()
		if err == nil {
			g.storeUp.Store(true)
			return true
		}
		if !sleep(ctx, reconnectInterval-time.Since(start)) {
			return false
		}
	}
}

// sleep waits d (nothing when d <= 0); false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// confirmedAgo is the time since the feed last proved the cache current
// (0 when it never did).
func (g *Gate) confirmedAgo() time.Duration {
	c := g.confirmed.Load()
	if c == 0 {
		return 0
	}
	return g.now().Sub(time.Unix(0, c))
}

// watch runs one subscription until it fails. *lostAt is when the feed was
// lost (zero while it was not), for the recovery log line; going live
// clears it.
func (g *Gate) watch(ctx context.Context, lostAt *time.Time) error {
	w := g.store.Watch(ctx)
	defer w.Close()
	var probeSent time.Time
	probePending := false
	lastRefresh := g.now()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		ev, err := w.Next(ctx, probeInterval)
		if err != nil {
			return err
		}
		switch {
		case ev.Subscribed:
			// Subscribed first, then reload: a change made after the
			// reload started is announced on the live feed.
			start := g.now()
			if err := g.refreshAll(ctx); err != nil {
				return err
			}
			lastRefresh = start
			g.markConfirmed(start)
			g.live.Store(true)
			if lostAt.IsZero() {
				g.log.Info("entitlements: change feed live", "cached", g.cache.len())
			} else {
				g.log.Info("entitlements: change feed live again", "cached", g.cache.len(),
					"down_ms", time.Since(*lostAt).Milliseconds(), "reload_ms", g.now().Sub(start).Milliseconds())
				*lostAt = time.Time{}
			}
		case ev.Customer != "":
			g.announced.Add(1)
			if err := g.reload(ctx, ev.Customer); err != nil {
				return err
			}
		case ev.Sync:
			g.markConfirmed(probeSent)
			probePending = false
		}
		if g.cfg.RefreshInterval > 0 && g.now().Sub(lastRefresh) >= g.cfg.RefreshInterval {
			lastRefresh = g.now()
			if err := g.refreshAll(ctx); err != nil {
				return err
			}
		}
		sinceProbe := g.now().Sub(probeSent)
		switch {
		case probePending && sinceProbe > probeTimeout:
			return errors.New("entitlements: change feed stopped answering")
		case !probePending && sinceProbe >= probeInterval:
			probeSent, probePending = g.now(), true
			if err := w.Probe(ctx); err != nil {
				return err
			}
		}
	}
}

// markConfirmed records a proof that every change announced before t has
// been applied. It only moves forward, and it is kept while the feed is
// down: it is what last-known state ages from (SPEC "Store faults").
func (g *Gate) markConfirmed(t time.Time) {
	if !t.IsZero() && t.UnixNano() > g.confirmed.Load() {
		g.confirmed.Store(t.UnixNano())
	}
}

// reload applies one announced change, if the customer is in memory.
func (g *Gate) reload(ctx context.Context, customer string) error {
	if !g.cache.has(customer) {
		return nil
	}
	start := g.now()
	grants, err := g.grantsOf(ctx, customer)
	if err != nil {
		return err
	}
	if prev := g.cache.get(customer); prev != nil {
		g.logGrantChanges(customer, activeGrants(prev.grants(), start), activeGrants(grants, start))
	}
	st, err := g.store.Get(ctx, customer)
	if errors.Is(err, ErrNotFound) {
		g.cache.remove(customer) // loaded afresh (state and grants) on next use
		return nil
	}
	if err != nil {
		return err
	}
	g.cache.put(customer, g.entryOf(st, grants, start, true))
	return nil
}

// refreshAll reloads every cached customer from the store, in batches.
func (g *Gate) refreshAll(ctx context.Context) error {
	keys := g.cache.keys()
	for len(keys) > 0 {
		n := min(len(keys), 500)
		batch := keys[:n]
		keys = keys[n:]
		start := g.now()
		grants, err := g.grantsMany(ctx, batch)
		if err != nil {
			return err
		}
		states, err := g.store.GetMany(ctx, batch)
		if err != nil {
			return err
		}
		for _, c := range batch {
			if st, ok := states[c]; ok {
				g.cache.put(c, g.entryOf(st, grants[c], start, false))
			} else if e := g.cache.get(c); e != nil && !e.negative() {
				g.cache.remove(c) // deleted meanwhile: load afresh on next use
			}
		}
	}
	return nil
}

func (g *Gate) grantsMany(ctx context.Context, customers []string) (map[string][]Grant, error) {
	if g.grants == nil {
		return nil, nil
	}
	return g.grants.GrantsMany(ctx, customers)
}
