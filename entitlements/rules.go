package entitlements

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/config"
)

// Denial is a refused decision, in the SPEC's shape.
type Denial struct {
	Status     int
	Code       string
	Message    string
	UpgradeURL string
	// PaymentURL is the failed invoice to pay, on the 402 of a customer
	// whose subscription is past_due beyond grace (or unpaid).
	PaymentURL string
	// Limit, Used and RetryAfter are set for quota denials.
	Limit, Used int64
	RetryAfter  time.Duration
}

// Decision is the answer for one request.
type Decision struct {
	Denial *Denial // nil: allowed
	// Plan, Status and Features describe the caller for the forwarded
	// X-Tollgate-Plan/-Status/-Features headers (Features comma separated).
	Plan, Status, Features string
	// Age is how old the state the decision used is.
	Age time.Duration
	// PeriodStart and PeriodEnd bound the customer's current billing period
	// (zero when there is none), for quotas.
	PeriodStart, PeriodEnd time.Time
	// Grants are the operator grants in force for the decision (shared with
	// the cache: read only).
	Grants []Grant
	// limits are the per-period meter limits of the entitled plans.
	limits map[string]int64
	// seats is the seat limit of the entitled plans; nil: none.
	seats *SeatLimit
}

// Limit returns the per-period limit the customer's plans put on a meter,
// and false when it is unlimited (no plan, or a plan without a limit).
func (d Decision) Limit(meter string) (int64, bool) {
	n, ok := d.limits[meter]
	return n, ok
}

// Allowed reports whether the request may proceed.
func (d Decision) Allowed() bool { return d.Denial == nil }

// Plans maps price ids to plan names and plan names to features.
type Plans struct {
	// onlyKnown ignores subscriptions without a configured price (plans
	// are configured and gating.any_price is off).
	onlyKnown bool
	byPrice   map[string]string
	features  map[string][]string
	limits    map[string]map[string]int64
	seats     map[string]config.Seats
	interned  interned // what cached customers share (view.go)
}

// NewPlans indexes the configured plans.
func NewPlans(cfg map[string]*config.Plan) *Plans {
	p := &Plans{byPrice: map[string]string{}, features: map[string][]string{}, limits: map[string]map[string]int64{},
		seats: map[string]config.Seats{}, onlyKnown: len(cfg) > 0}
	for name, pl := range cfg {
		for _, price := range pl.Prices {
			p.byPrice[price] = name
		}
		p.features[name] = pl.Features
		p.limits[name] = pl.Limits
		p.seats[name] = pl.Seats
	}
	return p
}

// PlanOf returns the plan a price belongs to.
func (p *Plans) PlanOf(price string) (string, bool) {
	name, ok := p.byPrice[price]
	return name, ok
}

// limitsOf combines the limits of several plans held together: a meter is
// limited only if every plan limits it, and then to the largest limit.
func (p *Plans) limitsOf(plans []string) map[string]int64 {
	if len(plans) == 0 {
		return nil
	}
	out := map[string]int64{}
	for m, n := range p.limits[plans[0]] {
		out[m] = n
	}
	for _, pl := range plans[1:] {
		for m, n := range out {
			other, ok := p.limits[pl][m]
			if !ok {
				delete(out, m)
			} else if other > n {
				out[m] = other
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Rules holds what a decision needs besides the state.
type Rules struct {
	Grace      time.Duration
	UpgradeURL string
}

// decide evaluates one requirement against a prepared state.
func (r Rules) decide(v *view, req config.Require, now time.Time) Decision {
	v = v.at(now)
	d, entitled := r.resolve(v, now)
	d.Grants = v.grants()
	if !entitled && (req.Subscription || len(req.Plans) > 0 || !hasAll(v.stripe.names, req.Features)) {
		d.Denial = r.subscriptionRequired(v, now)
		return d
	}
	if len(req.Plans) > 0 && !r.anyPlan(v, req.Plans, now) {
		d.Denial = r.deny(http.StatusForbidden, "plan_required", "Your plan does not include this; required: "+strings.Join(req.Plans, " or ")+".")
		return d
	}
	if missing := r.missingFeature(v, req.Features, now); missing != "" {
		d.Denial = r.deny(http.StatusForbidden, "feature_required", "Your plan does not include the feature "+missing+".")
	}
	return d
}

// resolve describes the caller from the entitled subscriptions of a view,
// and reports whether any is entitled.
func (r Rules) resolve(v *view, now time.Time) (Decision, bool) {
	var d Decision
	var first *subView
	extra := 0
	for i := range v.subs {
		s := &v.subs[i]
		if !s.entitled(now, r.Grace) {
			continue
		}
		if first == nil {
			first = s
		} else {
			extra++
		}
	}
	switch {
	case first == nil:
		d.Features = v.stripe.header
		if len(v.subs) > 0 {
			d.Status = v.subs[0].status
		}
		return d, false
	case extra == 0:
		d.Plan, d.Status, d.Features = first.shape.planHeader, first.status, first.shape.featHeader
		d.PeriodStart, d.PeriodEnd = unixTime(first.periodStart), unixTime(first.periodEnd)
		d.limits = first.shape.limits
		if first.granted {
			// Entitled by a granted plan alone: no Stripe period to count
			// its quotas in, so they run by calendar month.
			d.PeriodStart, d.PeriodEnd = calendarMonth(now)
		}
		d.seats = first.seats
	default:
		d = r.merge(v, now)
	}
	return d, true
}

func (r Rules) deny(status int, code, msg string) *Denial {
	return &Denial{Status: status, Code: code, Message: msg, UpgradeURL: r.UpgradeURL}
}

// subscriptionRequired is the 402 of a customer with nothing entitled,
// saying why: a failed payment (with the invoice to pay), a pause, or the
// subscription's status.
func (r Rules) subscriptionRequired(v *view, now time.Time) *Denial {
	d := r.deny(http.StatusPaymentRequired, "subscription_required", subscriptionMessage(v))
	payment := v.paymentURL()
	for i := range v.subs {
		s := &v.subs[i]
		if (s.status == StatusPastDue || s.status == StatusUnpaid) && payment != "" {
			d.Message, d.PaymentURL = "The last payment failed; pay the open invoice to restore access.", payment
			return d
		}
		if s.pausedAt(now) {
			d.Message = "The subscription is paused; resume it to restore access."
		}
	}
	return d
}

func subscriptionMessage(v *view) string {
	if len(v.subs) == 0 {
		return "An active subscription is required."
	}
	return "An active subscription is required; the current one is " + v.subs[0].status + "."
}

// merge combines several entitled subscriptions (rare: allocates).
func (r Rules) merge(v *view, now time.Time) Decision {
	var d Decision
	var plans, feats []string
	var index *Plans
	var start, end int64
	grantedPlan := false
	var seats []*SeatLimit
	for i := range v.subs {
		s := &v.subs[i]
		if !s.entitled(now, r.Grace) {
			continue
		}
		seats = append(seats, s.seats)
		if d.Status == "" {
			d.Status = s.status
		}
		index = s.shape.index
		plans = append(plans, s.shape.plans...)
		feats = append(feats, s.shape.features...)
		if s.periodEnd > end {
			start, end = s.periodStart, s.periodEnd
		}
		grantedPlan = grantedPlan || s.granted
	}
	d.PeriodStart, d.PeriodEnd = unixTime(start), unixTime(end)
	if end == 0 && grantedPlan {
		d.PeriodStart, d.PeriodEnd = calendarMonth(now)
	}
	d.limits = raise(index.limitsOf(sortedUnique(plans)), v.grantLimits())
	d.seats = mergeSeats(seats)
	d.Plan = strings.Join(sortedUnique(plans), ",")
	d.Features = strings.Join(sortedUnique(append(feats, v.stripe.names...)), ",")
	return d
}

func (r Rules) anyPlan(v *view, want []string, now time.Time) bool {
	for i := range v.subs {
		if s := &v.subs[i]; s.entitled(now, r.Grace) {
			for _, p := range s.shape.plans {
				if slices.Contains(want, p) {
					return true
				}
			}
		}
	}
	return false
}

// missingFeature returns the first required feature no entitled
// subscription (nor Stripe) grants, or "".
func (r Rules) missingFeature(v *view, want []string, now time.Time) string {
	for _, f := range want {
		found := has(v.stripe.names, f)
		for i := 0; i < len(v.subs) && !found; i++ {
			s := &v.subs[i]
			found = s.entitled(now, r.Grace) && has(s.shape.features, f)
		}
		if !found {
			return f
		}
	}
	return ""
}

// hasAll reports whether the sorted set holds every name in want.
func hasAll(set, want []string) bool {
	for _, w := range want {
		if !has(set, w) {
			return false
		}
	}
	return true
}

func has(set []string, name string) bool {
	_, ok := slices.BinarySearch(set, name)
	return ok
}
