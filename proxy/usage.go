package proxy

import (
	"context"
	"errors"
	"net/http"
	"strings"
)

// Errors of ParseUsage.
var (
	ErrUsageRepeated = errors.New("proxy: " + HeaderUsage + " given more than once")
	ErrUsageSyntax   = errors.New("proxy: " + HeaderUsage + " is not a non-negative decimal integer")
	ErrUsageRange    = errors.New("proxy: " + HeaderUsage + " is above metering.max_units_per_request")
)

// ParseUsage reads the values of an X-Tollgate-Usage field (header or
// trailer). Valid is exactly one value of ASCII digits, at most max: no
// sign, no blanks, no hex, no list. Anything else is an upstream bug that
// must not decide a bill ("the first of two" would let one layer of the
// app override another's count, and a value near 2^63 would wrap sums).
func ParseUsage(values []string, max int64) (int64, error) {
	if len(values) != 1 {
		return 0, ErrUsageRepeated
	}
	v := values[0]
	if v == "" {
		return 0, ErrUsageSyntax
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, ErrUsageSyntax
		}
		// n <= max <= config.MaxUnitsBound before this step: no overflow.
		if n = n*10 + int64(c-'0'); n > max {
			return 0, ErrUsageRange
		}
	}
	return n, nil
}

// bill is what one request on a metered route owes. It is settled exactly
// once: when the answer's header arrives (units in the header), when the
// upstream's body ends (units in a declared trailer), or when forwarding
// ends without either (settle).
type bill struct {
	meter    string
	units    int64 // the route's default, billed when nothing valid is declared
	hold     Hold  // the quota reservation; nil on an unlimited meter
	reserved int64
	declared int64 // units declared so far (an invalid value counts as units)
	any      bool  // anything was declared
	trailer  bool  // waiting for the X-Tollgate-Usage trailer
	done     bool
}

// meterAnswer bills by the answer's header (ModifyResponse calls it before
// reserved headers are stripped). An answer that is not billed releases
// the reservation. A 101 on a metered route (a WebSocket) is billed here,
// once. A declared X-Tollgate-Usage trailer defers billing to the body's
// end.
func (s *Server) meterAnswer(resp *http.Response, x *exchange) {
	b := x.bill
	if b == nil || b.done {
		return
	}
	upgrade := resp.StatusCode == http.StatusSwitchingProtocols
	// ReverseProxy refuses (502) a switch to another protocol than asked.
	switched := upgrade && strings.EqualFold(resp.Header.Get("Upgrade"), resp.Request.Header.Get("Upgrade"))
	if upgrade && !switched || !upgrade && !s.counted(resp.StatusCode) {
		s.charge(x, 0)
		return
	}
	ctx := resp.Request.Context()
	if vv := resp.Header[HeaderUsage]; vv != nil {
		b.declared, b.any = s.usage(ctx, x, vv, "header", s.maxUnits), true
	}
	if _, ok := resp.Trailer[HeaderUsage]; ok && !upgrade && resp.Body != nil && resp.Body != http.NoBody {
		b.trailer = true
		return
	}
	s.charge(x, b.owed())
}

// trailerEnd bills by the trailer, when the upstream's body has ended (the
// body reader calls it before the trailer is stripped). The trailer's
// units add to the header's; together they are at most
// metering.max_units_per_request.
func (s *Server) trailerEnd(resp *http.Response, x *exchange) {
	b := x.bill
	if b == nil || b.done || !b.trailer {
		return
	}
	b.trailer = false
	if vv := resp.Trailer[HeaderUsage]; vv != nil {
		b.declared, b.any = b.declared+s.usage(resp.Request.Context(), x, vv, "trailer", s.maxUnits-b.declared), true
	}
	s.charge(x, b.owed())
}

// settle bills what forwarding left open (deferred in ServeHTTP, so it runs
// also when ReverseProxy panics with http.ErrAbortHandler). A streamed
// answer whose body did not end, because the client went away or the
// upstream broke off, pays what was declared so far, or the route's
// default; a client that left before the answer pays the route's default
// (tollgate cannot know what the app did, and a disconnect must not be a
// way to use it for free); an upstream that never answered bills nothing.
func (s *Server) settle(x *exchange) {
	b := x.bill
	switch {
	case b == nil || b.done:
	case b.trailer:
		s.charge(x, b.owed())
	case x.clientGone:
		s.charge(x, b.units)
	default:
		s.charge(x, 0)
	}
}

// owed is what the declarations so far bill.
func (b *bill) owed() int64 {
	if !b.any {
		return b.units
	}
	return b.declared
}

// usage parses a declaration; an invalid one is logged at error, counted,
// and worth the route's default.
func (s *Server) usage(ctx context.Context, x *exchange, values []string, where string, max int64) int64 {
	n, err := ParseUsage(values, max)
	if err == nil {
		return n
	}
	b := x.bill
	s.metrics.UsageInvalid.WithLabelValues(b.meter).Inc()
	s.log.ErrorContext(ctx, "upstream sent an invalid "+HeaderUsage+"; billing the route's default",
		"route", x.route.label, "meter", b.meter, "in", where, "value", clip(strings.Join(values, ", "), 64),
		"cause", err.Error(), "units", b.units)
	return b.units
}

// charge settles the bill: units are counted for the customer and the
// reservation is settled with them.
func (s *Server) charge(x *exchange, units int64) {
	b := x.bill
	b.done = true
	if units > 0 {
		s.counter.Count(x.id, b.meter, units)
	}
	if b.hold != nil {
		b.hold.Settle(b.reserved, units)
	}
}

func clip(v string, n int) string {
	if len(v) <= n {
		return v
	}
	return v[:n] + "…"
}
