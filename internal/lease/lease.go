// Package lease runs a periodic job on one replica at a time: every
// interval each replica tries to take a short Redis lease, and the one
// that gets it runs the job. Reconciliation with Stripe, the background
// replay of Stripe's events and the usage reconciliation all run this way.
package lease

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// AcquireFunc takes a lease for ttl if nobody holds it.
type AcquireFunc func(ctx context.Context, ttl time.Duration) (bool, error)

// Redis is the lease in one key: SET NX PX.
func Redis(rdb redis.UniversalClient, key string) AcquireFunc {
	return func(ctx context.Context, ttl time.Duration) (bool, error) {
		return rdb.SetNX(ctx, key, "1", ttl).Result()
	}
}

// Every runs job every interval, on this replica only when it takes the
// lease, until ctx ends. The lease lasts 9/10 of the interval: shorter
// than it, so the next round is free to start on time, and long enough to
// cover one run. A run longer than that may overlap the next replica's;
// the jobs are safe to run twice. A lease that cannot be taken (Redis
// away) skips the round.
func Every(ctx context.Context, interval time.Duration, acquire AcquireFunc, job func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if ok, err := acquire(ctx, interval*9/10); err == nil && ok {
			job(ctx)
		}
	}
}
