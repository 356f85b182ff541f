package billing

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
	"golang.org/x/sync/singleflight"

	"github.com/tollgate-dev/tollgate/proxy"
)

// priceTTL is how long a price read from Stripe is reused: prices are
// immutable in amount and interval, but may be archived.
const priceTTL = 5 * time.Minute

// priceCache reads prices through stripe-go, once per id per TTL however
// many requests ask at the same time.
type priceCache struct {
	api   *client.API
	ttl   time.Duration
	now   func() time.Time
	mu    sync.Mutex
	m     map[string]cachedPrice
	loads singleflight.Group
}

type cachedPrice struct {
	p  *stripe.Price
	at time.Time
}

func newPriceCache(api *client.API, ttl time.Duration, now func() time.Time) *priceCache {
	return &priceCache{api: api, ttl: ttl, now: now, m: make(map[string]cachedPrice)}
}

func (c *priceCache) get(ctx context.Context, id string) (*stripe.Price, error) {
	c.mu.Lock()
	e, ok := c.m[id]
	c.mu.Unlock()
	if ok && c.now().Sub(e.at) < c.ttl {
		return e.p, nil
	}
	v, err, _ := c.loads.Do(id, func() (any, error) {
		p := &stripe.PriceParams{}
		p.Context = ctx
		price, err := c.api.Prices.Get(id, p)
		if err != nil {
			return nil, fmt.Errorf("get price %s: %w", id, err)
		}
		c.mu.Lock()
		c.m[id] = cachedPrice{p: price, at: c.now()}
		c.mu.Unlock()
		return price, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*stripe.Price), nil
}

// offer is what a plan sells at one interval: the prices a checkout puts
// on a new subscription, or a change puts on the current one.
type offer struct {
	plan     string
	interval string // month, year, week, day; "" for one-time prices
	prices   []*stripe.Price
}

func (o offer) recurring() bool { return o.interval != "" }

// currency is what the offer is priced in ("" for none).
func (o offer) currency() string {
	if len(o.prices) == 0 {
		return ""
	}
	return string(o.prices[0].Currency)
}

// offer resolves a plan name and an optional interval to the plan's
// active prices, as configured in plans.<name>.prices.
func (h *Handler) offer(ctx context.Context, plan, interval string) (offer, *proxy.HTTPError) {
	pc, ok := h.cfg.Plans[plan]
	if plan == "" || !ok {
		return offer{}, badRequest(fmt.Sprintf("Unknown plan %q; plans are: %s.", plan, strings.Join(h.planNames(), ", ")))
	}
	var recurring, oneTime []*stripe.Price
	for _, id := range pc.Prices {
		p, err := h.prices.get(ctx, id)
		if err != nil {
			return offer{}, stripeFailure(err)
		}
		switch {
		case !p.Active:
			continue // archived: kept for existing subscriptions, not sold
		case p.Type == stripe.PriceTypeRecurring && p.Recurring != nil:
			recurring = append(recurring, p)
		default:
			oneTime = append(oneTime, p)
		}
	}
	if len(recurring) == 0 {
		if len(oneTime) == 0 {
			return offer{}, &proxy.HTTPError{Status: http.StatusConflict, Code: "plan_unavailable",
				Msg: fmt.Sprintf("Plan %q has no active price in Stripe.", plan)}
		}
		if interval != "" {
			return offer{}, badRequest(fmt.Sprintf("Plan %q is a one-time purchase; leave out interval.", plan))
		}
		return offer{plan: plan, prices: oneTime}, nil
	}
	var intervals []string
	for _, p := range recurring {
		if iv := string(p.Recurring.Interval); !slices.Contains(intervals, iv) {
			intervals = append(intervals, iv)
		}
	}
	sort.Strings(intervals)
	switch {
	case interval == "" && len(intervals) == 1:
		interval = intervals[0]
	case interval == "":
		return offer{}, &proxy.HTTPError{Status: http.StatusBadRequest, Code: "interval_required",
			Msg:   fmt.Sprintf("Plan %q is sold per %s; say which with interval.", plan, strings.Join(intervals, " or ")),
			Extra: map[string]any{"intervals": intervals}}
	case !slices.Contains(intervals, interval):
		return offer{}, badRequest(fmt.Sprintf("Plan %q is not sold per %q; it is sold per %s.", plan, interval, strings.Join(intervals, " or ")))
	}
	o := offer{plan: plan, interval: interval}
	for _, p := range recurring {
		if string(p.Recurring.Interval) == interval {
			o.prices = append(o.prices, p)
		}
	}
	return o, nil
}

func (h *Handler) planNames() []string {
	names := make([]string, 0, len(h.cfg.Plans))
	for n := range h.cfg.Plans {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// metered reports whether a price bills reported usage (no quantity).
func metered(p *stripe.Price) bool {
	return p.Recurring != nil && p.Recurring.UsageType == stripe.PriceRecurringUsageTypeMetered
}

// dailyRate is what a set of prices costs per day, for telling an upgrade
// from a downgrade. Metered and tiered prices (no unit_amount) are left
// out: their cost depends on usage. ok is false when currencies differ.
func dailyRate(prices []*stripe.Price, quantities []int64) (rate float64, currency stripe.Currency, ok bool) {
	for i, p := range prices {
		if currency == "" {
			currency = p.Currency
		} else if p.Currency != currency {
			return 0, currency, false
		}
		if p.Recurring == nil || metered(p) || p.BillingScheme == stripe.PriceBillingSchemeTiered {
			continue
		}
		q := int64(1)
		if quantities != nil && quantities[i] > 0 {
			q = quantities[i]
		}
		rate += float64(p.UnitAmount*q) / periodDays(p.Recurring)
	}
	return rate, currency, true
}

func periodDays(r *stripe.PriceRecurring) float64 {
	n := float64(max(r.IntervalCount, 1))
	switch r.Interval {
	case stripe.PriceRecurringIntervalDay:
		return n
	case stripe.PriceRecurringIntervalWeek:
		return 7 * n
	case stripe.PriceRecurringIntervalYear:
		return 365 * n
	}
	return 30 * n // month
}
