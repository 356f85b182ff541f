package entitlements

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"regexp"
	"slices"
	"sort"
	"time"

	"github.com/tollgate-dev/tollgate/config"
)

// Grant is an operator's override for one customer (a comp account, a
// sales-led deal): features added, limits raised, a plan entitled as if
// subscribed, until an optional expiry. A grant only ever adds to what
// Stripe entitles; it never removes or lowers anything.
type Grant struct {
	ID       string   `json:"id"` // gr_...
	Customer string   `json:"customer"`
	Features []string `json:"features,omitempty"`
	// Limits raise the per-period limit of a meter that the customer's
	// plans limit, to at most this; they never create a limit on a meter
	// the plans leave unlimited, and never lower one.
	Limits map[string]int64 `json:"limits,omitempty"`
	// Plan is entitled as if the customer subscribed to it (status active).
	Plan string `json:"plan,omitempty"`
	// Until is when the grant stops applying; zero means until revoked.
	Until   time.Time `json:"until,omitzero"`
	Reason  string    `json:"reason"`
	By      string    `json:"by"`
	Created time.Time `json:"created"`
}

// Active reports whether the grant applies at now.
func (g Grant) Active(now time.Time) bool { return g.Until.IsZero() || now.Before(g.Until) }

// Errors of grant operations.
var (
	ErrGrantNotFound  = errors.New("entitlements: no such grant")
	ErrTooManyGrants  = errors.New("entitlements: too many active grants for one customer")
	ErrInvalidGrantID = errors.New("entitlements: not a grant id (gr_...)")
)

// MaxActiveGrants bounds the grants one customer can hold at once: each
// active grant is part of every decision's prepared state.
const MaxActiveGrants = 50

var grantIDRe = regexp.MustCompile(`^gr_[a-z0-9]{1,64}$`)

// ValidGrantID reports whether id has the shape of a grant id.
func ValidGrantID(id string) bool { return grantIDRe.MatchString(id) }

// NewGrantID returns a fresh random grant id.
func NewGrantID() string {
	var b [12]byte
	rand.Read(b[:])
	return "gr_" + hex.EncodeToString(b[:])
}

// GrantStore reads the grants that decisions merge in; *RedisStore is one.
type GrantStore interface {
	// Grants returns a customer's stored grants (expired ones included).
	Grants(ctx context.Context, customer string) ([]Grant, error)
	// GrantsMany returns the grants of several customers (customers
	// without any are absent).
	GrantsMany(ctx context.Context, customers []string) (map[string][]Grant, error)
}

// activeGrants returns the grants in force at now, sorted by expiry, the
// ones without an expiry last: the order in which they stop applying.
func activeGrants(grants []Grant, now time.Time) []Grant {
	var out []Grant
	for _, g := range grants {
		if g.Active(now) {
			out = append(out, g)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Until, out[j].Until
		return !a.IsZero() && (b.IsZero() || a.Before(b))
	})
	return out
}

// granted is the union of a customer's active grants, resolved against
// the configured plans.
type granted struct {
	features []string         // sorted, unique
	plans    []string         // configured plans only, sorted, unique
	limits   map[string]int64 // the largest grant per meter; nil when none
}

func unionOf(grants []Grant, plans *Plans) granted {
	var u granted
	for _, g := range grants {
		for _, f := range g.Features {
			// Checked again here, not only by tollgate grant: a feature
			// ends up in X-Tollgate-Features, where a comma or a line
			// break written into Redis by anything else must not go.
			if config.ValidName(f) {
				u.features = append(u.features, f)
			}
		}
		// A plan removed from the configuration since the grant was made
		// entitles nothing.
		if _, ok := plans.features[g.Plan]; ok && g.Plan != "" {
			u.plans = append(u.plans, g.Plan)
		}
		for m, n := range g.Limits {
			if u.limits == nil {
				u.limits = map[string]int64{}
			}
			u.limits[m] = max(u.limits[m], n)
		}
	}
	u.features, u.plans = sortedUnique(u.features), sortedUnique(u.plans)
	return u
}

// raise returns limits with every limited meter raised to the grants'
// limit where that is higher. A meter the plans leave unlimited stays
// unlimited (nil limits stay nil): a grant never lowers anything.
func raise(limits, by map[string]int64) map[string]int64 {
	if len(limits) == 0 || len(by) == 0 {
		return limits
	}
	out := make(map[string]int64, len(limits))
	for m, n := range limits {
		out[m] = max(n, by[m])
	}
	return out
}

// calendarMonth is the billing period of a customer entitled by a granted
// plan alone (no Stripe period to count a quota in): the UTC calendar
// month holding now.
func calendarMonth(now time.Time) (start, end time.Time) {
	y, m, _ := now.UTC().Date()
	start = time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	return start, start.AddDate(0, 1, 0)
}

// logGrantChanges tells the operator, on every replica, which grants of a
// cached customer a change brought in or took away, and who made them.
// The reason stays in the audit: it is free text, and may name a person.
func (g *Gate) logGrantChanges(customer string, before, after []Grant) {
	had := func(list []Grant, id string) bool {
		return slices.ContainsFunc(list, func(x Grant) bool { return x.ID == id })
	}
	for _, gr := range after {
		if !had(before, gr.ID) {
			g.log.Info("entitlements: grant applied", "customer", customer, "grant", gr.ID, "by", gr.By,
				"plan", gr.Plan, "features", gr.Features, "limits", gr.Limits, "until", gr.Until)
		}
	}
	for _, gr := range before {
		if !had(after, gr.ID) {
			g.log.Info("entitlements: grant removed", "customer", customer, "grant", gr.ID)
		}
	}
}
