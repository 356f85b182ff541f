package proxy

import "github.com/tollgate-dev/tollgate/config"

// decisionSeatLimit is the denial of a user beyond their plan's seats.
const decisionSeatLimit = "seat_limit"

// initSeatSeries creates the seat_limit series of every route the gate
// judges (a requirement, or a limited meter), once some plan limits seats.
func (s *Server) initSeatSeries(c *config.Config, limited map[string]bool) {
	seats := false
	for _, p := range c.Plans {
		seats = seats || p.Seats.Limited()
	}
	if !seats {
		return
	}
	for _, rt := range s.routes {
		if rt.cfg.Require.Any() || limited[rt.cfg.Meter] {
			s.metrics.Requests.WithLabelValues(rt.label, decisionSeatLimit)
		}
	}
}
