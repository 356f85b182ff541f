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

// view is a State prepared for decisions.
type view struct {
	stripe *featureSet // the Stripe entitlements' lookup keys; never nil
	subs   []subView
}

// subView is one subscription, resolved against the configured plans once,
// when the state enters the cache, so that a decision does no allocation.
type subView struct {
	shape       *planShape
	periodStart int64 // unix nanoseconds; 0 when unknown
	periodEnd   int64
	status      string // one of the Status constants when known
	cancelAtEnd bool
}

// planShape is what every subscription to the same plans, of a customer
// with the same Stripe features, shares.
type planShape struct {
	index      *Plans
	plans      []string // sorted
	features   []string // sorted: plan features ∪ Stripe entitlements
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

func newView(st *State, plans *Plans) view {
	stripeFeatures := sortedUnique(st.Features)
	v := view{stripe: plans.featureSet(stripeFeatures)}
	if st.Deleted || len(st.Subscriptions) == 0 {
		return v
	}
	v.subs = make([]subView, 0, len(st.Subscriptions))
	for _, s := range st.Subscriptions {
		names := plans.plansOf(s)
		if len(names) == 0 && plans.onlyKnown {
			continue // another product's subscription: not this app's to honour
		}
		v.subs = append(v.subs, subView{shape: plans.shape(names, stripeFeatures), status: internStatus(s.Status),
			periodStart: unixNano(s.CurrentPeriodStart), periodEnd: unixNano(s.CurrentPeriodEnd), cancelAtEnd: s.CancelAtPeriodEnd})
	}
	if len(v.subs) == 0 {
		v.subs = nil // no empty backing array kept
	}
	return v
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

// shape returns the shared resolution of plans (sorted names) for a
// customer with stripeFeatures (sorted, unique).
func (p *Plans) shape(plans, stripeFeatures []string) *planShape {
	key := strings.Join(plans, ",") + "\x00" + strings.Join(stripeFeatures, ",")
	t := &p.interned
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.shapes[key]; ok {
		return s
	}
	feats := slices.Clone(stripeFeatures)
	for _, name := range plans {
		feats = append(feats, p.features[name]...)
	}
	s := &planShape{index: p, plans: plans, features: sortedUnique(feats), limits: p.limitsOf(plans)}
	s.planHeader, s.featHeader = strings.Join(s.plans, ","), strings.Join(s.features, ",")
	if len(s.plans) == 0 {
		s.plans = nil
	}
	if t.shapes == nil {
		t.shapes = map[string]*planShape{}
	}
	if len(t.shapes) < maxInterned {
		t.shapes[key] = s
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
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func unixTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// entitled applies the SPEC's status rules at time now.
func (s *subView) entitled(now time.Time, grace time.Duration) bool {
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
