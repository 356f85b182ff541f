package proxy

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Quota reserves what requests on limited routes cost before they are
// forwarded (the sidecar puts meter.Quotas behind it).
type Quota interface {
	// Reserve holds c.Units of the customer's quota. It returns a
	// *QuotaExceeded when the quota cannot pay for the request, another
	// error when the quota cannot be checked.
	Reserve(ctx context.Context, c Claim) (Hold, error)
	// Overrun is for a request forwarded although Reserve refused it
	// (shadow mode): it holds nothing, and Settle(0, used) counts the
	// units served against the quota, so that the routes that enforce it
	// count them too.
	Overrun(c Claim) (Hold, error)
}

// Claim is one request's cost against a quota.
type Claim struct {
	Customer, Meter string
	Units           int64
	Limit           Limit
}

// Limit is the per-period limit the gate found on a route's meter for the
// caller; the zero Limit means none.
type Limit struct {
	Set                    bool
	Units                  int64
	PeriodStart, PeriodEnd time.Time
}

// Hold is a request's reservation. The proxy calls Settle exactly once, with
// the units it reserved and the units the answer billed (0 when it was
// denied, failed or not billed).
type Hold interface {
	Settle(reserved, used int64)
	State() QuotaState
}

// QuotaState is what the RateLimit header fields say.
type QuotaState struct {
	Limit, Remaining int64
	// Window is the billing period's length, Reset the time left in it.
	Window, Reset time.Duration
}

// QuotaExceeded is the error a Quota returns when the request cannot be
// paid for: 429 quota_exceeded.
type QuotaExceeded struct {
	Limit, Used int64
	State       QuotaState
	// RetryAfter is when trying again can succeed: the period's end, or
	// sooner when other replicas hold units they may give back.
	RetryAfter time.Duration
}

func (e *QuotaExceeded) Error() string {
	return fmt.Sprintf("quota exceeded: %d of %d used", e.Used, e.Limit)
}

// codeQuotaExceeded is the code of a request its quota cannot pay for.
const codeQuotaExceeded = "quota_exceeded"

var errQuotaUnavailable = &HTTPError{Status: http.StatusServiceUnavailable, Code: "entitlements_unavailable",
	Msg: "Usage cannot be checked right now; try again shortly."}

// reserve holds the request's units on a limited route (step 9). A route
// with fail_open forwards unreserved when the quota cannot be checked.
func (s *Server) reserve(ctx context.Context, x *exchange) *HTTPError {
	rc := x.route.cfg
	if rc.Meter == "" || s.counter == nil {
		return nil
	}
	if x.id.Customer == "" {
		// Metered routes are auth: required, so this is a signed-in user
		// with no customer yet: nobody could be billed for the answer.
		return errNoCustomerToBill
	}
	x.owed = bill{meter: rc.Meter, units: rc.Units()}
	x.bill = &x.owed
	if !x.decision.Limit.Set || s.quota == nil {
		return nil
	}
	h, err := s.quota.Reserve(ctx, x.claim())
	if err == nil {
		x.bill.hold, x.bill.reserved = h, rc.Units()
		return nil
	}
	var ex *QuotaExceeded // (escapes into errors.As: only on refusals)
	switch {
	case errors.As(err, &ex):
		return quotaDenial(rc.Meter, ex)
	case rc.FailOpen:
		s.log.WarnContext(ctx, "quota cannot be checked; fail_open route forwarded without a reservation", "meter", rc.Meter, "cause", err.Error())
		return nil
	default:
		return errQuotaUnavailable.WithCause(err)
	}
}

// claim is the request's cost against its route's quota.
func (x *exchange) claim() Claim {
	rc := x.route.cfg
	return Claim{Customer: x.id.Customer, Meter: rc.Meter, Units: rc.Units(), Limit: x.decision.Limit}
}

func quotaDenial(meter string, ex *QuotaExceeded) *HTTPError {
	e := &HTTPError{Status: http.StatusTooManyRequests, Code: codeQuotaExceeded,
		Msg:        fmt.Sprintf("The %s quota of your plan is used up for this billing period.", meter),
		Extra:      map[string]any{"limit": ex.Limit, "used": ex.Used},
		RetryAfter: max(1, int(math.Ceil(ex.RetryAfter.Seconds()))),
		Header:     http.Header{},
	}
	setRateLimit(e.Header, meter, ex.State)
	return e
}

// setRateLimit writes the RateLimit-Policy and RateLimit fields of
// draft-ietf-httpapi-ratelimit-headers (-08 and later): the policy is
// named after the meter, q is the limit, w the billing period in seconds,
// r what remains and t the seconds to the period's end. Fields are added,
// so an application's own policies are kept beside tollgate's. Every
// answer on a limited route carries them, so both values are built in one
// buffer and share one string and one value slice (two allocations, not
// nine).
func setRateLimit(h http.Header, meter string, st QuotaState) {
	var buf [192]byte
	b := appendQuoted(buf[:0], meter)
	name := len(b)
	b = strconv.AppendInt(append(b, ";q="...), st.Limit, 10)
	b = appendSeconds(append(b, ";w="...), st.Window)
	policy := len(b)
	b = append(b, b[:name]...)
	b = strconv.AppendInt(append(b, ";r="...), max(0, st.Remaining), 10)
	b = appendSeconds(append(b, ";t="...), st.Reset)
	v := string(b)
	vals := []string{v[:policy], v[policy:]}
	addValue(h, "Ratelimit-Policy", vals[0:1:1]) // the canonical forms of RateLimit-Policy
	addValue(h, "Ratelimit", vals[1:2:2])        // and RateLimit, as Header.Add stores them
}

// appendQuoted appends meter as an sf-string. Meter names are
// [A-Za-z0-9_.-] (config), which need no escape; strconv.AppendQuote, for
// anything else, costs more than the rest of the two fields together.
func appendQuoted(b []byte, meter string) []byte {
	for i := 0; i < len(meter); i++ {
		if c := meter[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return strconv.AppendQuote(b, meter)
		}
	}
	return append(append(append(b, '"'), meter...), '"')
}

// addValue is Header.Add of vv's one value, for a canonical name: vv
// itself becomes the field's values when it has none.
func addValue(h http.Header, name string, vv []string) {
	if old := h[name]; len(old) > 0 {
		h[name] = append(old, vv[0])
		return
	}
	h[name] = vv
}

// appendSeconds appends d rounded up to whole non-negative seconds.
func appendSeconds(b []byte, d time.Duration) []byte {
	return strconv.AppendInt(b, max(0, int64(math.Ceil(d.Seconds()))), 10)
}
