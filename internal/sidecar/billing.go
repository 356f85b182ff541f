package sidecar

import (
	"github.com/tollgate-dev/tollgate/billing"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/proxy"
)

// newBilling builds the self-serve billing API: the mount to serve under
// billing.prefix, behind authentication, or none when it is off.
func newBilling(s *Sidecar, source entitlements.Source) ([]proxy.Mount, error) {
	cfg := s.cfg
	if !cfg.BillingServed() {
		if cfg.Billing.Prefix != "" {
			s.log.Info("stripe.secret_key is not set: the billing API is off", "prefix", cfg.Billing.Prefix)
		}
		return nil, nil
	}
	o := billing.Options{Config: cfg, Stripe: s.Stripe, Store: s.Customers, Source: source, Gate: s.Gate,
		Checkouts: billing.NewRedisCheckouts(s.Store), Replays: billing.NewRedisReplays(s.Store), Logger: s.log, Now: s.now}
	if s.seats != nil {
		o.Seats = s.seats.seats
	}
	if s.meter != nil {
		// What the meter counted (in Redis, buffered and in memory): what
		// the customer is billed for.
		o.Used = s.meter.Used
	}
	h, err := billing.New(o)
	if err != nil {
		return nil, err
	}
	return []proxy.Mount{{Path: cfg.Billing.Prefix, Prefix: true, Handler: h, Auth: true}}, nil
}
