package entitlements

import (
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Issue 11: the cache holds up to gating.cache_size customers (100,000 by
// default), so what each one costs is what the process costs. A view keeps
// only what decisions read, packed, and everything customers have in
// common is shared: the resolution of a set of plans and Stripe features
// (names, headers, limits) is interned per Plans, and statuses are the
// package's constants. BenchmarkCachedCustomerMemory (internal/sidecar)
// measures the result in a running sidecar.

// view is a State, and the grants in force, prepared for decisions.
type view struct {
	stripe *featureSet // Stripe's entitlements and granted features; never nil
	subs   []subView
	// extra is what few customers have (a failed payment, operator
	// grants); nil for the others, so that they do not pay for it.
	extra *viewExtra
}

// viewExtra is the part of a view that most customers do without.
type viewExtra struct {
	// paymentURL is the hosted page of the customer's failed invoice, ""
	// when none.
	paymentURL string
	// grants are the grants this view includes (read only: shared with
	// decisions), grantLimits their limits.
	grants      []Grant
	grantLimits map[string]int64
	// next, when set, is the view once the first of the grants expires
	// (at expires, unix nanoseconds): every replica stops applying a grant
	// at its expiry, with no timer and no reload.
	next    *view
	expires int64
}

// subView is one subscription, resolved against the configured plans once,
// when the state enters the cache, so that a decision does no allocation.
type subView struct {
	shape       *planShape
	periodStart int64 // unix nanoseconds; 0 when unknown
	periodEnd   int64
	// pausedUntil is when a pause of payment collection ends (unix
	// nanoseconds): 0 when not paused, math.MaxInt64 until resumed.
	pausedUntil int64
	status      string // one of the Status constants when known
	cancelAtEnd bool
	// granted marks the subscription a granted plan stands for.
	granted bool
	// seats is the seat limit of its plans; nil: seats not limited.
	seats *SeatLimit
}

// planShape is what every subscription to the same plans, of a customer
// with the same Stripe (and granted) features, shares.
type planShape struct {
	index      *Plans
	plans      []string // sorted
	features   []string // sorted: plan features ∪ Stripe entitlements ∪ granted
	planHeader string
	featHeader string
	limits     map[string]int64
}

// featureSet is a sorted set of feature names and its header form.
type featureSet struct {
	names  []string
	header string
}

var noFeatures = &featureSet{}

func newView(st *State, plans *Plans) view { return newGrantedView(st, nil, plans, time.Time{}) }

// newGrantedView prepares a state and the grants in force at now. It
// builds one view per expiry to come, so that a decision only walks to
// the view of its time.
func newGrantedView(st *State, grants []Grant, plans *Plans, now time.Time) view {
	return chainViews(st, activeGrants(grants, now), plans)
}

func chainViews(st *State, active []Grant, plans *Plans) view {
	v := buildView(st, active, plans)
	if len(active) == 0 || active[0].Until.IsZero() {
		return v
	}
	i := 0
	for i < len(active) && active[i].Until.Equal(active[0].Until) {
		i++
	}
	next := chainViews(st, active[i:], plans)
	v.extra.next, v.extra.expires = &next, unixNano(active[0].Until)
	return v
}

// at returns the view in force at now.
func (v *view) at(now time.Time) *view {
	t := now.UnixNano()
	for v.extra != nil && v.extra.next != nil && t >= v.extra.expires {
		v = v.extra.next
	}
	return v
}

// grants are the grants the view includes.
func (v *view) grants() []Grant {
	if v.extra == nil {
		return nil
	}
	return v.extra.grants
}

func (v *view) grantLimits() map[string]int64 {
	if v.extra == nil {
		return nil
	}
	return v.extra.grantLimits
}

func (v *view) paymentURL() string {
	if v.extra == nil {
		return ""
	}
	return v.extra.paymentURL
}

func buildView(st *State, active []Grant, plans *Plans) view {
	u := unionOf(active, plans)
	features := sortedUnique(slices.Concat(st.Features, u.features))
	v := view{stripe: plans.featureSet(features)}
	if len(active) > 0 {
		v.extra = &viewExtra{grants: active, grantLimits: u.limits}
	}
	if !st.Deleted {
		v.subs = stripeSubs(st, features, u.limits, plans)
		if fi := st.FailedInvoice; fi != nil && strings.HasPrefix(fi.HostedInvoiceURL, "https://") {
			if v.extra == nil {
				v.extra = &viewExtra{}
			}
			v.extra.paymentURL = fi.HostedInvoiceURL
		}
	}
	// Granted plans apply whatever Stripe says of the customer: they are
	// the operator's explicit choice.
	if len(u.plans) > 0 {
		v.subs = append(v.subs, subView{shape: plans.shape(u.plans, features, u.limits), status: StatusActive, granted: true})
	}
	return v
}

// stripeSubs resolves the customer's Stripe subscriptions for a customer
// with features (Stripe's and granted), their limits raised to raiseTo.
func stripeSubs(st *State, features []string, raiseTo map[string]int64, plans *Plans) []subView {
	if len(st.Subscriptions) == 0 {
		return nil
	}
	subs := make([]subView, 0, len(st.Subscriptions))
	for _, s := range st.Subscriptions {
		names := plans.plansOf(s)
		if len(names) == 0 && plans.onlyKnown {
			continue // another product's subscription: not this app's to honour
		}
		subs = append(subs, subView{shape: plans.shape(names, features, raiseTo), status: internStatus(s.Status),
			periodStart: unixNano(s.CurrentPeriodStart), periodEnd: unixNano(s.CurrentPeriodEnd),
			pausedUntil: pausedUntil(s.PauseCollection), cancelAtEnd: s.CancelAtPeriodEnd,
			seats: plans.seatsOf(s, names)})
	}
	if len(subs) == 0 {
		return nil // no empty backing array kept
	}
	return subs
}

// pausedUntil packs a pause: 0 when there is none, math.MaxInt64 until
// resumed. A resumes_at at or before the epoch packs to a past instant or
// 0, both of which pause nothing, as that resumes_at has passed.
func pausedUntil(p *PauseCollection) int64 {
	switch {
	case p == nil:
		return 0
	case p.ResumesAt.IsZero():
		return math.MaxInt64
	}
	return unixNano(p.ResumesAt)
}

// pausedAt reports whether the subscription's collection is paused at now:
// Stripe resumes by itself at resumes_at, so a late webhook does not keep
// a customer out.
func (s *subView) pausedAt(now time.Time) bool {
	return s.pausedUntil != 0 && now.UnixNano() < s.pausedUntil
}

// ignoredSubscriptions lists the running subscriptions newView leaves out
// for holding no configured price, for the operator to hear of.
func ignoredSubscriptions(st *State, plans *Plans) []string {
	var out []string
	if st.Deleted || !plans.onlyKnown {
		return nil
	}
	for _, s := range st.Subscriptions {
		running := s.Status == StatusActive || s.Status == StatusTrialing || s.Status == StatusPastDue
		if running && len(plans.plansOf(s)) == 0 {
			out = append(out, s.ID)
		}
	}
	return out
}

// plansOf is the sorted names of the configured plans a subscription's
// prices belong to.
func (p *Plans) plansOf(s Subscription) []string {
	var names []string
	for _, price := range s.Prices {
		if name, ok := p.byPrice[price]; ok && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// maxInterned bounds each intern table: past it (an account with very many
// distinct feature combinations), views get shapes of their own.
const maxInterned = 10_000

// interned holds what views share.
type interned struct {
	mu     sync.Mutex
	shapes map[string]*planShape
	sets   map[string]*featureSet
}

// shape returns the resolution of plans (sorted names) for a customer with
// features (sorted, unique: Stripe's and granted), their limits raised to
// raiseTo (a grant's). It is shared between customers unless limits are
// raised: those are rare, and their limits their own.
func (p *Plans) shape(plans, features []string, raiseTo map[string]int64) *planShape {
	if len(raiseTo) > 0 {
		return p.newShape(plans, features, raiseTo)
	}
	key := strings.Join(plans, ",") + "\x00" + strings.Join(features, ",")
	t := &p.interned
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.shapes[key]; ok {
		return s
	}
	s := p.newShape(plans, features, nil)
	if t.shapes == nil {
		t.shapes = map[string]*planShape{}
	}
	if len(t.shapes) < maxInterned {
		t.shapes[key] = s
	}
	return s
}

func (p *Plans) newShape(plans, features []string, raiseTo map[string]int64) *planShape {
	feats := slices.Clone(features)
	for _, name := range plans {
		feats = append(feats, p.features[name]...)
	}
	s := &planShape{index: p, plans: plans, features: sortedUnique(feats), limits: raise(p.limitsOf(plans), raiseTo)}
	s.planHeader, s.featHeader = strings.Join(s.plans, ","), strings.Join(s.features, ",")
	if len(s.plans) == 0 {
		s.plans = nil
	}
	return s
}

// featureSet returns the shared set of names (sorted, unique).
func (p *Plans) featureSet(names []string) *featureSet {
	if len(names) == 0 {
		return noFeatures
	}
	header := strings.Join(names, ",")
	t := &p.interned
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.sets[header]; ok {
		return s
	}
	s := &featureSet{names: names, header: header}
	if t.sets == nil {
		t.sets = map[string]*featureSet{}
	}
	if len(t.sets) < maxInterned {
		t.sets[header] = s
	}
	return s
}

// internStatus returns the package's constant for a known status, so that
// cached views share its bytes instead of each keeping the decoded copy.
func internStatus(s string) string {
	switch s {
	case StatusActive:
		return StatusActive
	case StatusTrialing:
		return StatusTrialing
	case StatusPastDue:
		return StatusPastDue
	case StatusCanceled:
		return StatusCanceled
	case StatusUnpaid:
		return StatusUnpaid
	case StatusIncomplete:
		return StatusIncomplete
	case StatusIncompleteExpired:
		return StatusIncompleteExpired
	case StatusPaused:
		return StatusPaused
	}
	return s
}

func sortedUnique(in []string) []string {
	out := append([]string(nil), in...)
	sort.Strings(out)
	return slices.Compact(out)
}

// unixNano packs a time (0 for the zero time); unixTime unpacks it.
// Times outside what int64 nanoseconds hold (before 1678, after 2262)
// saturate: UnixNano is undefined there, and an end in the year 3000 must
// stay in the future.
func unixNano(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
	case t.After(maxNanoTime):
		return math.MaxInt64
	case t.Before(minNanoTime):
		return math.MinInt64
	}
	return t.UnixNano()
}

var minNanoTime, maxNanoTime = time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64)

func unixTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// entitled applies the SPEC's status rules at time now. A subscription
// whose payment collection is paused is not entitled until it resumes.
func (s *subView) entitled(now time.Time, grace time.Duration) bool {
	if s.pausedAt(now) {
		return false
	}
	t := now.UnixNano()
	switch s.status {
	case StatusActive, StatusTrialing:
		// cancel_at_period_end keeps access until the period ends, and no
		// longer, even if the deletion webhook is late.
		return !s.cancelAtEnd || s.periodEnd == 0 || t < s.periodEnd
	case StatusPastDue:
		// Grace runs from the end of the unpaid period; with no known
		// period there is nothing to run from, so it fails closed.
		return s.periodEnd != 0 && t < addSaturating(s.periodEnd, int64(grace))
	}
	return false
}

// addSaturating is a+b, or the largest int64 where that overflows (a
// grace period of centuries).
func addSaturating(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
