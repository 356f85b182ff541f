package testrig

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// Values Stripe accepts for subscription update parameters.
var (
	prorationBehaviors = []string{"always_invoice", "create_prorations", "none"}
	paymentBehaviors   = []string{"allow_incomplete", "default_incomplete", "error_if_incomplete", "pending_if_incomplete"}
)

// pendingUpdateParams are the only parameters Stripe takes with
// payment_behavior=pending_if_incomplete
// (https://stripe.com/docs/billing/subscriptions/pending-updates-reference);
// on 2023-10-16 anything else, metadata included, is refused.
var pendingUpdateParams = []string{"add_invoice_items", "billing_cycle_anchor", "expand", "items",
	"payment_behavior", "proration_behavior", "proration_date", "trial_end", "trial_from_plan"}

// canceledUpdateParams are what a canceled subscription still takes.
var canceledUpdateParams = []string{"cancellation_details", "expand", "metadata"}

func (d *StripeDouble) registerSubscriptionRoutes() {
	d.Handle("POST /v1/subscriptions/{id}", d.updateSubscription)
	d.Handle("POST /v1/subscriptions/{id}/resume", d.resumeSubscription)
	// Registered after GET /v1/invoices/{id}, so it wins for "upcoming".
	d.Handle("GET /v1/invoices/upcoming", d.upcomingInvoice)
}

// Subscription returns a subscription as stored (put, updated or
// scheduled), decoded into stripe-go's type.
func (d *StripeDouble) Subscription(id string) (*stripe.Subscription, bool) {
	return storedAs[stripe.Subscription](d, d.objects.subs, "subscription", id)
}

// updateSubscription implements POST /v1/subscriptions/{id} for
// cancel_at_period_end, items, proration_behavior, proration_date,
// payment_behavior, pause_collection and metadata. Payments always succeed,
// so every accepted update applies at once; a change of items is billed as
// double_prorations.go describes.
func (d *StripeDouble) updateSubscription(c *Call) *Response {
	f := c.Form
	if resp := checkSubscriptionUpdate(f); resp != nil {
		return resp
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	o, miss := d.pathSubscriptionLocked(c)
	if miss != nil {
		return miss
	}
	m := o.decode()
	if resp := checkSubscriptionUpdatable(f, m); resp != nil {
		return resp
	}
	if f.Get("proration_date") != "" {
		if _, resp := prorationDate(f, "proration_date", m, d.now().Unix(), false); resp != nil {
			return resp
		}
	}
	if hasParam(f, "items") {
		old := subItems(m)
		items, resp := d.changeItemsLocked(old, indexedForm(f, "items"), "items")
		if resp != nil {
			return resp
		}
		if resp := d.prorateUpdateLocked(o, m, old, items, f); resp != nil {
			return resp
		}
		d.setSubItemsLocked(m, items)
	}
	if resp := setPauseCollection(m, f, d.now().Unix()); resp != nil {
		return resp
	}
	if s := f.Get("cancel_at_period_end"); s != "" {
		on, err := strconv.ParseBool(s)
		if err != nil {
			return badRequest("Invalid boolean: "+s, "cancel_at_period_end")
		}
		m["cancel_at_period_end"], m["cancel_at"], m["canceled_at"] = false, nil, nil
		if on {
			m["cancel_at_period_end"], m["cancel_at"], m["canceled_at"] = true, m["current_period_end"], d.now().Unix()
		}
	}
	mergeMetadata(m, f, "metadata")
	d.saveSubscriptionLocked(o, m)
	return JSONResponse(http.StatusOK, d.renderSubscriptionLocked(d.objects.subs[o.id], expansions(f)))
}

// checkSubscriptionUpdate checks what needs no stored object: enums and
// the parameters pending updates take.
func checkSubscriptionUpdate(f url.Values) *Response {
	if resp := checkEnum(f, "proration_behavior", prorationBehaviors...); resp != nil {
		return resp
	}
	if resp := checkEnum(f, "payment_behavior", paymentBehaviors...); resp != nil {
		return resp
	}
	if f.Get("payment_behavior") == "pending_if_incomplete" {
		if p := paramOutside(f, pendingUpdateParams); p != "" {
			return badRequest(fmt.Sprintf("When `payment_behavior` is `pending_if_incomplete`, only these parameters can be updated: %s. Remove `%s`.",
				strings.Join(pendingUpdateParams, ", "), p), p)
		}
	}
	return nil
}

// checkSubscriptionUpdatable refuses updates the subscription's state
// forbids: a canceled subscription, and a subscription whose schedule owns
// its cancelation and items.
func checkSubscriptionUpdatable(f url.Values, m map[string]any) *Response {
	if str(m["status"]) == string(stripe.SubscriptionStatusCanceled) {
		if p := paramOutside(f, canceledUpdateParams); p != "" {
			return badRequest("A canceled subscription can only update its cancellation_details and metadata.", p)
		}
	}
	sched := objectID(m["schedule"])
	if sched == "" {
		return nil
	}
	for _, p := range []string{"cancel_at_period_end", "cancel_at"} {
		if hasParam(f, p) {
			return badRequest(fmt.Sprintf("The subscription is managed by the subscription schedule `%s`, and updating any cancelation behavior directly is not allowed. Please update the schedule instead.", sched), p)
		}
	}
	if hasParam(f, "items") {
		return badRequest(fmt.Sprintf("The subscription is managed by the subscription schedule `%s`, and updating its items directly is not allowed. Please update the schedule instead.", sched), "items")
	}
	return nil
}

// paramOutside returns the first (in sort order) top-level parameter not in
// allowed, or "".
func paramOutside(f url.Values, allowed []string) string {
	var out []string
	for k := range f {
		top, _, _ := strings.Cut(k, "[")
		if !slices.Contains(allowed, top) {
			out = append(out, top)
		}
	}
	if len(out) == 0 {
		return ""
	}
	return slices.Min(out)
}

// prorationDate reads a proration date parameter: it must fall within the
// subscription's current period and, for a real update (not a preview),
// not lie in the future. Absent, it is now.
func prorationDate(f url.Values, param string, m map[string]any, now int64, preview bool) (int64, *Response) {
	s := f.Get(param)
	if s == "" {
		return now, nil
	}
	p, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, invalidInteger(param, s)
	}
	if !preview && p > now {
		return 0, badRequest(fmt.Sprintf("`%s` cannot be in the future.", param), param)
	}
	start, end, resp := currentPeriod(m)
	if resp != nil {
		return 0, resp
	}
	if p < start || p > end {
		return 0, badRequest(fmt.Sprintf("`%s` must be within the current subscription period (%d to %d).", param, start, end), param)
	}
	return p, nil
}

// currentPeriod is a subscription's current_period_start and _end, which
// the test must have set for anything that prorates.
func currentPeriod(m map[string]any) (start, end int64, resp *Response) {
	start, end = num(m["current_period_start"]), num(m["current_period_end"])
	if end <= start {
		return 0, 0, badRequest(fmt.Sprintf("testrig: subscription %s has no current period: set CurrentPeriodStart and CurrentPeriodEnd in PutSubscription", str(m["id"])), "")
	}
	return start, end, nil
}

// resumeSubscription implements POST /v1/subscriptions/{id}/resume: only a
// paused subscription resumes, by default starting a new period now.
func (d *StripeDouble) resumeSubscription(c *Call) *Response {
	f := c.Form
	if resp := checkEnum(f, "billing_cycle_anchor", "now", "unchanged"); resp != nil {
		return resp
	}
	if resp := checkEnum(f, "proration_behavior", prorationBehaviors...); resp != nil {
		return resp
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	o, miss := d.pathSubscriptionLocked(c)
	if miss != nil {
		return miss
	}
	m := o.decode()
	if str(m["status"]) != string(stripe.SubscriptionStatusPaused) {
		return badRequest("Subscription must be paused to resume", "")
	}
	m["status"] = string(stripe.SubscriptionStatusActive)
	if f.Get("billing_cycle_anchor") != "unchanged" {
		now := d.now().Unix()
		m["billing_cycle_anchor"], m["current_period_start"] = now, now
		if items := subItems(m); len(items) > 0 {
			p, _ := d.itemPriceLocked(items[0])
			m["current_period_end"] = addInterval(now, p.interval, p.intervalCount)
		}
	}
	d.saveSubscriptionLocked(o, m)
	return JSONResponse(http.StatusOK, d.renderSubscriptionLocked(d.objects.subs[o.id], expansions(f)))
}

// saveSubscriptionLocked stores m as subscription o's new state.
func (d *StripeDouble) saveSubscriptionLocked(o storedObject, m map[string]any) {
	raw, err := json.Marshal(m)
	if err != nil {
		panic("testrig: encode subscription: " + err.Error())
	}
	o.raw, o.status = raw, str(m["status"])
	d.objects.subs[o.id] = o
}

// mergeMetadata applies name[key]=value to m[name] as Stripe does: an empty
// value removes the key, an empty name clears them all.
func mergeMetadata(m map[string]any, f url.Values, name string) {
	md, _ := m[name].(map[string]any)
	if md == nil || (f.Has(name) && f.Get(name) == "") {
		md = make(map[string]any)
	}
	for k, v := range formMap(f, name) {
		if v == "" {
			delete(md, k)
		} else {
			md[k] = v
		}
	}
	m[name] = md
}

// subItem is one subscription item as the double models it.
type subItem struct {
	id       string
	price    string
	quantity int64
	priceObj map[string]any // the price as the item embeds it
	obj      map[string]any // the item's JSON; nil for a new item
}

// subItems reads a subscription's items.data.
func subItems(m map[string]any) []subItem {
	list, _ := m["items"].(map[string]any)
	data, _ := list["data"].([]any)
	var out []subItem
	for _, v := range data {
		obj, ok := v.(map[string]any)
		if !ok {
			continue
		}
		it := subItem{id: str(obj["id"]), quantity: num(obj["quantity"]), obj: obj}
		for _, k := range []string{"price", "plan"} {
			if it.price = objectID(obj[k]); it.price != "" {
				it.priceObj, _ = obj[k].(map[string]any)
				break
			}
		}
		out = append(out, it)
	}
	return out
}

// itemPriceLocked is an item's price: the one put with PutPrice, else the
// one the item embeds.
func (d *StripeDouble) itemPriceLocked(it subItem) (priceInfo, map[string]any) {
	if p, obj, ok := d.priceLocked(it.price); ok {
		return p, obj
	}
	if it.priceObj == nil {
		return priceInfo{id: it.price, intervalCount: 1}, map[string]any{"id": it.price}
	}
	return priceFromMap(it.priceObj), it.priceObj
}

// changeItemsLocked applies prefix[i][id|price|quantity|deleted] to a copy
// of items, as Stripe applies items to an update and subscription_items to
// a preview: an id names an existing item, no id adds one, a price must be
// known and recurring.
func (d *StripeDouble) changeItemsLocked(items []subItem, groups []formGroup, prefix string) ([]subItem, *Response) {
	items = append([]subItem(nil), items...)
	for _, g := range groups {
		param := fmt.Sprintf("%s[%d]", prefix, g.index)
		id := g.form.Get("id")
		at := -1
		for i, it := range items {
			if id != "" && it.id == id {
				at = i
			}
		}
		if id != "" && at < 0 {
			return nil, missingRef("subscription item", id, param+"[id]")
		}
		if del := g.form.Get("deleted"); del != "" && del != "false" {
			if del != "true" {
				return nil, badRequest("Invalid boolean: "+del, param+"[deleted]")
			}
			if at < 0 {
				return nil, missingParam(param + "[id]")
			}
			items = append(items[:at], items[at+1:]...)
			continue
		}
		it, resp := d.changedItemLocked(items, at, g.form, param)
		if resp != nil {
			return nil, resp
		}
		if at < 0 {
			items = append(items, it)
		} else {
			items[at] = it
		}
	}
	if len(items) == 0 {
		return nil, badRequest("A subscription must have at least one item.", prefix)
	}
	return items, nil
}

// changedItemLocked is items[at] (or a new item when at < 0) with one
// group's price and quantity applied.
func (d *StripeDouble) changedItemLocked(items []subItem, at int, g url.Values, param string) (subItem, *Response) {
	var it subItem
	if at >= 0 {
		it = items[at]
	} else {
		it = subItem{id: d.nextIDLocked("si"), quantity: 1}
	}
	was, _ := d.itemPriceLocked(it)
	if id := g.Get("price"); id != "" {
		p, obj, ok := d.priceLocked(id)
		if !ok {
			return it, missingRef("price", id, param+"[price]")
		}
		if !p.recurring() {
			return it, badRequest("The price specified is set to `type=one_time` but this field only accepts prices with `type=recurring`.", param+"[price]")
		}
		it.price, it.priceObj = id, obj
	} else if at < 0 {
		return it, missingParam(param + "[price]")
	}
	p, _ := d.itemPriceLocked(it)
	switch {
	case p.metered():
		it.quantity = 0 // metered items have no quantity
	case at >= 0 && was.metered():
		it.quantity = 1
	}
	if s := g.Get("quantity"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return it, invalidInteger(param+"[quantity]", s)
		}
		if p.metered() {
			return it, badRequest("You cannot set the quantity for metered plans.", param+"[quantity]")
		}
		it.quantity = n
	}
	return it, nil
}

// setSubItemsLocked writes items back into the subscription's items.data.
func (d *StripeDouble) setSubItemsLocked(m map[string]any, items []subItem) {
	data := make([]any, len(items))
	for i, it := range items {
		obj := it.obj
		if obj == nil {
			obj = map[string]any{"object": "subscription_item", "created": d.now().Unix(), "metadata": map[string]any{},
				"subscription": m["id"]}
		}
		_, price := d.itemPriceLocked(it)
		obj["id"], obj["price"], obj["quantity"] = it.id, price, it.quantity
		if _, ok := obj["plan"].(map[string]any); ok || it.obj == nil {
			obj["plan"] = planFromPrice(priceFromMap(price))
		}
		data[i] = obj
	}
	list, _ := m["items"].(map[string]any)
	if list == nil {
		list = map[string]any{"object": "list", "has_more": false, "url": "/v1/subscription_items?subscription=" + str(m["id"])}
	}
	list["data"], list["total_count"] = data, len(data)
	m["items"] = list
}

// planFromPrice is the legacy plan Stripe mirrors from a recurring price.
func planFromPrice(p priceInfo) map[string]any {
	return map[string]any{"id": p.id, "object": "plan", "active": true, "amount": p.unitAmount, "currency": p.currency,
		"interval": p.interval, "interval_count": p.intervalCount, "usage_type": p.usageType}
}

// addInterval is t plus count price intervals, in UTC calendar terms.
func addInterval(t int64, interval string, count int64) int64 {
	n := int(max(count, 1))
	tm := time.Unix(t, 0).UTC()
	switch interval {
	case "day":
		tm = tm.AddDate(0, 0, n)
	case "week":
		tm = tm.AddDate(0, 0, 7*n)
	case "year":
		tm = tm.AddDate(n, 0, 0)
	default:
		tm = tm.AddDate(0, n, 0)
	}
	return tm.Unix()
}
