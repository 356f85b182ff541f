package config

import (
	"strings"
	"time"
)

// validateSeats checks a plan's seats: a whole number from 1 to MaxSeats,
// or "quantity".
func validateSeats(p *problems, path string, s Seats) {
	if !s.Limited() || s == SeatsQuantity {
		return
	}
	n, ok := s.Fixed()
	if !ok || n < 1 || n > MaxSeats {
		p.add(path, "%q is not a whole number of seats from 1 to %d, nor quantity (the subscription item's quantity); leave seats out for no limit", string(s), MaxSeats)
	}
}

// validateSeatBilling checks the billing keys of seats.
func (c *Config) validateSeatBilling(p *problems) {
	b := c.Billing
	if b.AdminClaim != strings.TrimSpace(b.AdminClaim) {
		p.add("billing.admin_claim", "%q has leading or trailing spaces: a claim name never does", b.AdminClaim)
	}
	switch b.SeatProration {
	case "create_prorations", "always_invoice", "none":
	default:
		p.add("billing.seat_proration", "%q is not create_prorations, always_invoice or none", b.SeatProration)
	}
	if b.SeatsSyncDelay < 100*time.Millisecond || b.SeatsSyncDelay > 24*time.Hour {
		p.add("billing.seats_sync_delay", "must be 100ms..24h, got %s", b.SeatsSyncDelay)
	}
	if !b.SeatsSync {
		return
	}
	if c.Stripe.SecretKey == "" {
		p.add("billing.seats_sync", "needs stripe.secret_key: the subscription item's quantity is changed in Stripe")
	}
	seated := false
	for _, pl := range c.Plans {
		seated = seated || pl.Seats.Limited()
	}
	if !seated {
		p.add("billing.seats_sync", "no plan sets seats: set plans.<name>.seats (a number or quantity) for the plans billed per seat")
	}
}

// validateMetrics checks the metrics section.
func (c *Config) validateMetrics(p *problems) {
	if d := c.Metrics.SubscriptionsInterval; d != 0 && (d < time.Second || d > time.Hour) {
		p.add("metrics.subscriptions_interval", "must be 0 (off) or 1s..1h, got %s", d)
	}
}
