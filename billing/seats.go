package billing

import (
	"context"
	"net/http"
	"strings"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/proxy"
)

// Seats lists and releases a customer's seats; *entitlements.Seats is
// one.
type Seats interface {
	List(ctx context.Context, customer string) ([]entitlements.SeatHolder, int64, error)
	Release(ctx context.Context, customer, user string) (bool, int64, error)
}

var errAdminRequired = &proxy.HTTPError{Status: http.StatusForbidden, Code: "admin_required",
	Msg: "Only an admin of this account may release seats."}

type seatsAnswer struct {
	Plan string `json:"plan,omitempty"`
	// Limit is the number of seats beyond which newcomers are refused;
	// nil when none is (no seat plan, or seats: quantity with
	// billing.seats_sync, where the quantity grows instead).
	Limit   *int64                    `json:"limit"`
	Used    int64                     `json:"used"`
	Holders []entitlements.SeatHolder `json:"holders"`
	// HasMore is set when there are more holders than listed.
	HasMore bool `json:"has_more"`
	// Admin says whether the caller may release seats.
	Admin bool `json:"admin"`
}

// seats answers GET seats: who holds a seat of the caller's customer,
// since when and last seen (to within 30 s), and the limit.
func (h *Handler) seats(c *call) (any, *proxy.HTTPError) {
	a := seatsAnswer{Holders: []entitlements.SeatHolder{}, Admin: h.isAdmin(c)}
	customer := c.id.Customer
	if customer == "" {
		return a, nil
	}
	d := h.gate.Decide(c.ctx, customer, config.Require{Subscription: true}, false)
	if d.Denial != nil && d.Denial.Code == "entitlements_unavailable" {
		return nil, errUnavailable
	}
	if l, ok := d.Seats(); ok && d.Allowed() {
		a.Plan = l.Plan
		if !(l.Quantity && h.cfg.Billing.SeatsSync) {
			a.Limit = &l.Limit
		}
	}
	holders, used, err := h.seatList.List(c.ctx, customer)
	if err != nil {
		return nil, errUnavailable.WithCause(err)
	}
	a.Holders, a.Used, a.HasMore = holders, used, int64(len(holders)) < used
	return a, nil
}

type releaseAnswer struct {
	User     string `json:"user"`
	Released bool   `json:"released"` // false: the user held no seat
	Used     int64  `json:"used"`
}

// releaseSeat answers DELETE seats/{user}: an admin of the customer frees
// a user's seat, on every replica at once. The user takes a seat again on
// their next request if one is free.
func (h *Handler) releaseSeat(c *call) (any, *proxy.HTTPError) {
	if !h.isAdmin(c) {
		return nil, errAdminRequired
	}
	customer, herr := c.customer()
	if herr != nil {
		return nil, herr
	}
	user := seatUser(c.r.URL.Path, h.seatPrefix)
	ok, used, err := h.seatList.Release(c.ctx, customer, user)
	if err != nil {
		return nil, errUnavailable.WithCause(err)
	}
	h.log.InfoContext(c.ctx, "billing: seat released", "customer", customer, "user", user, "by", c.id.User, "released", ok)
	return releaseAnswer{User: user, Released: ok, Used: used}, nil
}

// isAdmin reports whether the caller's token carries billing.admin_claim
// as the boolean true (a string "true" is not enough: claims are typed).
func (h *Handler) isAdmin(c *call) bool {
	name := h.cfg.Billing.AdminClaim
	if name == "" {
		return false
	}
	v, ok := c.id.Claims[name].(bool)
	return ok && v
}

// seatEndpoint is the endpoint of DELETE seats/{user}, when path is one.
func (h *Handler) seatEndpoint(path string) (endpoint, bool) {
	if h.seatList == nil || seatUser(path, h.seatPrefix) == "" {
		return endpoint{}, false
	}
	return endpoint{http.MethodDelete, "seats/release", h.releaseSeat, true}, true
}

// seatUser is the {user} of prefix/{user}: one non-empty segment.
func seatUser(path, prefix string) string {
	u, ok := strings.CutPrefix(path, prefix)
	if !ok || u == "" || strings.Contains(u, "/") {
		return ""
	}
	return u
}
