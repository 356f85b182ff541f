package sidecar

import (
	"context"
	"time"

	"github.com/tollgate-dev/tollgate/meter"
	"github.com/tollgate-dev/tollgate/proxy"
)

// meterService counts usage on the request path and reports it; Close
// flushes every pending count (graceful shutdown loses nothing).
type meterService interface {
	proxy.Counter
	Close(ctx context.Context) error
	// Used is the usage since a time, for quotas.
	Used(ctx context.Context, customer, meter string, since time.Time) (int64, error)
}

var _ meterService = (*meter.Meter)(nil)

// newMeter builds the usage meter and starts its workers (issue 6). It
// returns nil when metering.meters is empty. The meter's workers run on a
// context of its own, not ctx: they must outlive the serve context, which
// ends at SIGTERM before the final flush.
func newMeter(_ context.Context, s *Sidecar) (meterService, error) {
	if len(s.cfg.Metering.Meters) == 0 {
		return nil, nil
	}
	o := meter.Options{
		Config:  s.cfg.Metering,
		Redis:   s.Store.Client,
		Keys:    s.Store.Keys,
		Metrics: s.Metrics,
		Logger:  s.log,
	}
	if s.cfg.Stripe.SecretKey != "" {
		o.Sender = meter.NewStripeSender(s.Stripe, s.cfg.Stripe.Timeout)
	} else {
		// tollgate demo, and deployments that only count: nothing is sent
		// anywhere, the counts wait in the store.
		s.log.Info("trusted payload mode: usage is counted and kept in the store, and not reported to Stripe")
	}
	m, err := meter.New(o)
	if err != nil {
		return nil, err
	}
	return m, nil
}
