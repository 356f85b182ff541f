package sidecar

import (
	"context"

	"github.com/tollgate-dev/tollgate/meter"
	"github.com/tollgate-dev/tollgate/proxy"
)

// meterService counts usage on the request path and reports it; Close
// flushes every pending count (graceful shutdown loses nothing).
type meterService interface {
	proxy.Counter
	Close(ctx context.Context) error
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
	m, err := meter.New(meter.Options{
		Config:  s.cfg.Metering,
		Redis:   s.Store.Client,
		Keys:    s.Store.Keys,
		Sender:  meter.NewStripeSender(s.Stripe, s.cfg.Stripe.Timeout),
		Metrics: s.Metrics,
		Logger:  s.log,
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}
