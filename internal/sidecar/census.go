package sidecar

import (
	"context"
	"sync"
	"time"

	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/internal/lease"
	"github.com/tollgate-dev/tollgate/internal/metrics"
)

// startCensus counts tollgate_subscriptions and tollgate_seats_in_use from
// the store every metrics.subscriptions_interval on the replica that takes
// the lease; the others set them to 0, so that one replica exports the
// count: max() across replicas is it (sum() too, except while the lease
// changes hands).
func (s *Sidecar) startCensus(ctx context.Context, wg *sync.WaitGroup) {
	every := s.cfg.Metrics.SubscriptionsInterval
	if every <= 0 || len(s.cfg.Plans) == 0 {
		return
	}
	acquire := lease.Redis(s.Store.Client, s.Store.Keys.Global("lease", "subscriptions"))
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			s.censusRound(ctx, acquire, every)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// censusRound counts once if this replica takes the lease, else exports 0.
func (s *Sidecar) censusRound(ctx context.Context, acquire lease.AcquireFunc, every time.Duration) {
	if ok, err := acquire(ctx, every*9/10); err != nil || !ok {
		s.setCensus(entitlements.Census{})
		return
	}
	o := entitlements.CensusOptions{Store: s.Customers, Plans: s.cfg.Plans, Gating: s.cfg.Gating, Now: s.now()}
	if s.seats != nil {
		o.Seats = s.seats.seats
	}
	cctx, cancel := context.WithTimeout(ctx, every)
	defer cancel()
	c, err := entitlements.Count(cctx, o)
	if err != nil {
		// The last count stays: a gauge that drops to 0 on a Redis hiccup
		// would page someone for nothing.
		s.log.Warn("metrics: counting subscriptions failed", "err", err)
		return
	}
	s.setCensus(c)
}

// setCensus exports a count: every configured plan's series, 0 where the
// count has none.
func (s *Sidecar) setCensus(c entitlements.Census) {
	m := s.Metrics
	for name, p := range s.cfg.Plans {
		for _, st := range metrics.SubscriptionStatuses {
			m.Subscriptions.WithLabelValues(name, st).Set(float64(c.Subscriptions[entitlements.PlanStatus{Plan: name, Status: st}]))
		}
		if p.Seats.Limited() {
			m.SeatsInUse.WithLabelValues(name).Set(float64(c.Seats[name]))
		}
	}
}
