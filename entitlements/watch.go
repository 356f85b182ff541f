package entitlements

import (
	"context"
	"errors"
	"time"
)

// probeInterval is how often the watcher proves the feed is live; it is
// also the worst-case delay before a lost connection is noticed.
const probeInterval = time.Second

// Run keeps this replica's cache current until ctx ends: it applies every
// announced change, proves the feed live once a second (which advances the
// confirmation time decisions age from), reloads every cached customer
// after a reconnect, and every gating.refresh_interval as a backstop for a
// lost announcement.
func (g *Gate) Run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := g.watch(ctx)
		g.confirmed.Store(0)
		if ctx.Err() != nil {
			return
		}
		g.log.Warn("entitlements: change feed lost; deciding on last known state", "err", err,
			"max_staleness", g.cfg.MaxStaleness.String())
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// watch runs one subscription until it fails.
func (g *Gate) watch(ctx context.Context) error {
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
			g.log.Info("entitlements: change feed live", "cached", g.cache.len())
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
		case probePending && sinceProbe > 3*probeInterval:
			return errors.New("entitlements: change feed stopped answering")
		case !probePending && sinceProbe >= probeInterval:
			probeSent, probePending = g.now(), true
			if err := w.Probe(ctx); err != nil {
				return err
			}
		}
	}
}

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
		g.logGrantChanges(customer, prev.grants, grants)
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
			} else if e := g.cache.get(c); e != nil && e.negativeUntil.IsZero() {
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
