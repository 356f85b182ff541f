package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/tollgate-dev/tollgate/proxy/auth"
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
	// Memo is the caller's identity's (auth.Identity.Memo), nil without one.
	Memo *auth.Memo
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
		return quotaDenial(rc.Meter, x.route.rate, ex)
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
	return Claim{Customer: x.id.Customer, Meter: rc.Meter, Units: rc.Units(), Limit: x.decision.Limit, Memo: x.id.Memo}
}

func quotaDenial(meter string, rate *rateFields, ex *QuotaExceeded) *HTTPError {
	e := &HTTPError{Status: http.StatusTooManyRequests, Code: codeQuotaExceeded,
		Msg:        fmt.Sprintf("The %s quota of your plan is used up for this billing period.", meter),
		Extra:      map[string]any{"limit": ex.Limit, "used": ex.Used},
		RetryAfter: int(max(1, seconds(ex.RetryAfter))),
		Header:     http.Header{},
	}
	policy, limit := rate.values(ex.State)
	setFields(e.Header, policy, []string{limit})
	return e
}

// rateFields writes one metered route's RateLimit-Policy and RateLimit
// fields (draft-ietf-httpapi-ratelimit-headers, -08 and later): the policy
// is named after the meter, q is the limit, w the billing period in
// seconds, r what remains and t the seconds to the period's end. An
// application's own policies are kept beside tollgate's (see set). Every
// answer on a limited route carries them (issue 13), so the meter is
// quoted once, at start, and the policy value, the same on every answer
// while the caller's limit and the window are, is built once and shared
// by the answers (a value slice of capacity 1: an app's own policy added
// after it copies it, nothing writes into it); it is built again when a
// caller's limit or window differs.
type rateFields struct {
	quoted string
	policy atomic.Pointer[ratePolicy]
}

type ratePolicy struct {
	limit, window int64 // window in seconds
	vals          []string
}

func newRateFields(meter string) *rateFields {
	return &rateFields{quoted: string(appendQuoted(nil, meter))}
}

// set writes the fields for st into the client's answer, the RateLimit
// field's value in the exchange's slot: one allocation, its string. It
// runs in modifyResponse, before ReverseProxy copies the app's answer
// header into the client's with Header.Add: the app's own RateLimit
// fields come after tollgate's (Add copies the capacity-1 value slices),
// and nothing before it writes these fields there, so they are set
// without first reading what is there (two map lookups a request).
func (f *rateFields) set(h http.Header, st QuotaState, x *exchange) {
	policy, limit := f.values(st)
	setFields(h, policy, x.slot(slotRateLimit, limit))
}

// values returns the policy field's shared values and the RateLimit
// field's value for st.
func (f *rateFields) values(st QuotaState) (policy []string, limit string) {
	w := seconds(st.Window)
	p := f.policy.Load()
	if p == nil || p.limit != st.Limit || p.window != w {
		p = &ratePolicy{limit: st.Limit, window: w, vals: []string{f.field(";q=", st.Limit, ";w=", w)}}
		f.policy.Store(p)
	}
	return p.vals, f.field(";r=", max(0, st.Remaining), ";t=", seconds(st.Reset))
}

// field is the quoted meter with two parameters.
func (f *rateFields) field(k1 string, v1 int64, k2 string, v2 int64) string {
	var buf [96]byte
	b := strconv.AppendInt(append(append(buf[:0], f.quoted...), k1...), v1, 10)
	return string(strconv.AppendInt(append(b, k2...), v2, 10))
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

// setFields sets the RateLimit-Policy and RateLimit fields, by the
// canonical names Header.Set stores them under.
func setFields(h http.Header, policy, limit []string) {
	h["Ratelimit-Policy"], h["Ratelimit"] = policy, limit
}

// seconds is d rounded up to whole non-negative seconds.
func seconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	n := d / time.Second
	if d%time.Second != 0 {
		n++
	}
	return int64(n)
}
