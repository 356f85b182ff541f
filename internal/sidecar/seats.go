package sidecar

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/proxy"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// seatGate takes the caller's seat in the gate step, after the plan,
// status and features allowed the request and before its quota is
// reserved: a request refused for want of a seat holds no quota.
type seatGate struct {
	seats *entitlements.Seats
	// quantities is the billing.seats_sync worker; nil when off.
	quantities *entitlements.SeatSync
	// sync is billing.seats_sync: a seats: quantity plan then tracks its
	// seats without a limit (the quantity follows them).
	sync       bool
	upgradeURL string
	log        *slog.Logger
}

// newSeatGate returns the seat gate, or nil when no plan limits seats.
func newSeatGate(s *Sidecar) *seatGate {
	cfg := s.cfg
	if len(entitlements.NewPlans(cfg.Plans).SeatPlans()) == 0 {
		return nil
	}
	o := entitlements.SeatOptions{Redis: s.Store.Client, Keys: s.Store.Keys, MaxStaleness: cfg.Gating.MaxStaleness,
		MaxCached: cfg.Gating.CacheSize, Logger: s.log, Now: s.now}
	if cfg.Billing.SeatsSync {
		o.SyncDelay = cfg.Billing.SeatsSyncDelay
	}
	g := &seatGate{seats: entitlements.NewSeats(o), sync: cfg.Billing.SeatsSync, upgradeURL: cfg.Gating.UpgradeURL, log: s.log}
	if cfg.Billing.SeatsSync && cfg.Stripe.SecretKey != "" {
		g.quantities = entitlements.NewSeatSync(entitlements.SeatSyncOptions{Seats: g.seats, Store: s.Customers,
			Plans: cfg.Plans, Stripe: entitlements.NewStripeQuantities(s.Stripe), Proration: cfg.Billing.SeatProration, Logger: s.log})
	}
	return g
}

// run runs the release feed and the quantity sync until ctx ends.
func (g *seatGate) run(ctx context.Context, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		g.seats.Run(ctx)
	}()
	if g.quantities != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.quantities.Run(ctx)
		}()
	}
}

var errSeatsUnavailable = &proxy.HTTPError{Status: http.StatusServiceUnavailable, Code: "entitlements_unavailable",
	Msg: "Entitlements cannot be checked right now; try again shortly."}

// check takes a seat for the caller when the decision's plan limits seats.
// A newcomer beyond the limit gets 403 seat_limit; one whose seat cannot
// be checked (Redis away) gets 503, or passes on a fail_open route.
func (g *seatGate) check(ctx context.Context, route *config.Route, id auth.Identity, d entitlements.Decision) *proxy.HTTPError {
	if g == nil || id.Customer == "" || id.User == "" {
		return nil
	}
	lim, ok := d.Seats()
	if !ok {
		return nil
	}
	limit := lim.Limit
	if lim.Quantity && g.sync {
		limit = -1 // the quantity grows with the seats instead
	}
	err := g.seats.Take(ctx, id.Customer, id.User, limit)
	var ex *entitlements.SeatLimitExceeded
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ex):
		return g.limitReached(ex)
	case route.FailOpen:
		g.log.WarnContext(ctx, "seats: cannot check the seat; allowed (fail_open)", "customer", id.Customer, "err", err)
		return nil
	}
	return errSeatsUnavailable.WithCause(err)
}

func (g *seatGate) limitReached(ex *entitlements.SeatLimitExceeded) *proxy.HTTPError {
	var msg string
	switch ex.Limit {
	case 0:
		msg = "Your subscription has no seats; add seats, or upgrade."
	case 1:
		msg = "The one seat of your plan is taken; ask an admin to release it, or upgrade."
	default:
		msg = "All " + strconv.FormatInt(ex.Limit, 10) + " seats of your plan are taken; ask an admin to release one, or upgrade."
	}
	e := &proxy.HTTPError{Status: http.StatusForbidden, Code: "seat_limit", Msg: msg,
		Extra: map[string]any{"limit": ex.Limit, "used": ex.Used}}
	if g.upgradeURL != "" {
		e.Extra["upgrade_url"] = g.upgradeURL
	}
	return e
}
