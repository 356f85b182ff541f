package sidecar

import (
	"context"
	"time"

	"github.com/tollgate-dev/tollgate/meter"
	"github.com/tollgate-dev/tollgate/proxy"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// meterService counts usage on the request path and reports it; Close
// flushes every pending count (graceful shutdown loses nothing).
type meterService interface {
	// CountMemo counts units on the request path (meter.Meter.CountMemo).
	CountMemo(customer, meter string, units int64, memo *meter.Memo)
	Close(ctx context.Context) error
	// Used is the usage since a time, for quotas.
	Used(ctx context.Context, customer, meter string, since time.Time) (int64, error)
}

var _ meterService = (*meter.Meter)(nil)

// counterAdapter puts the meter behind proxy.Counter, with the customer's
// memo.
type counterAdapter struct{ m meterService }

var _ proxy.Counter = counterAdapter{}

func (a counterAdapter) Count(id auth.Identity, meter string, units int64) {
	a.m.CountMemo(id.Customer, meter, units, memoOf(id.Customer, id.Memo).meter())
}

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
