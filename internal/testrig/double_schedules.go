package testrig

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/stripe/stripe-go/v76"
)

// Subscription schedule statuses that still take updates, release and
// cancel.
var liveScheduleStatuses = []string{"not_started", "active"}

func (d *StripeDouble) registerScheduleRoutes() {
	d.Handle("POST /v1/subscription_schedules", d.createSchedule)
	d.Handle("GET /v1/subscription_schedules/{id}", d.getSchedule)
	d.Handle("POST /v1/subscription_schedules/{id}", d.updateSchedule)
	d.Handle("POST /v1/subscription_schedules/{id}/release", d.releaseSchedule)
	d.Handle("POST /v1/subscription_schedules/{id}/cancel", d.cancelSchedule)
}

// Schedule returns a subscription schedule as the double would answer it
// (current_phase by the double's clock), decoded into stripe-go's type.
func (d *StripeDouble) Schedule(id string) (*stripe.SubscriptionSchedule, bool) {
	d.mu.Lock()
	o, ok := d.billing.schedules[id]
	var raw []byte
	if ok {
		raw, _ = json.Marshal(d.renderScheduleLocked(o, nil))
	}
	d.mu.Unlock()
	if !ok {
		return nil, false
	}
	return decodeAs[stripe.SubscriptionSchedule](d.tb, raw, "subscription schedule", id), true
}

// ApplySchedulePhase simulates reaching a phase's start: the schedule's
// subscription gets the phase's prices and quantities (items keep their ids
// where the price stays) and a current period starting at the phase's
// start_date. It does not release or complete the schedule.
func (d *StripeDouble) ApplySchedulePhase(scheduleID string, phase int) {
	d.tb.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	o, ok := d.billing.schedules[scheduleID]
	if !ok {
		d.tb.Fatalf("testrig: ApplySchedulePhase(%q): no such schedule", scheduleID)
	}
	m := o.decode()
	phases := schedulePhases(m)
	if phase < 0 || phase >= len(phases) {
		d.tb.Fatalf("testrig: ApplySchedulePhase(%q, %d): the schedule has %d phases", scheduleID, phase, len(phases))
	}
	sub := objectID(m["subscription"])
	if _, ok := d.objects.subs[sub]; !ok {
		d.tb.Fatalf("testrig: ApplySchedulePhase(%q): schedule has no subscription (status %s)", scheduleID, o.status)
	}
	d.applyPhaseLocked(sub, phases[phase], true)
}

// schedPhase is one phase as the double models it.
type schedPhase struct {
	start, end        int64
	items             []subItem // price and quantity only
	prorationBehavior string
}

// schedulePhases reads a stored schedule's phases.
func schedulePhases(m map[string]any) []schedPhase {
	raw, _ := m["phases"].([]any)
	out := make([]schedPhase, 0, len(raw))
	for _, v := range raw {
		pm, _ := v.(map[string]any)
		ph := schedPhase{start: num(pm["start_date"]), end: num(pm["end_date"]), prorationBehavior: str(pm["proration_behavior"])}
		items, _ := pm["items"].([]any)
		for _, it := range items {
			im, _ := it.(map[string]any)
			ph.items = append(ph.items, subItem{price: objectID(im["price"]), quantity: num(im["quantity"])})
		}
		out = append(out, ph)
	}
	return out
}

// phaseObject is a phase in Stripe's shape (prices as ids).
func phaseObject(ph schedPhase, currency string) map[string]any {
	items := make([]any, len(ph.items))
	for i, it := range ph.items {
		items[i] = map[string]any{"price": it.price, "plan": it.price, "quantity": it.quantity, "metadata": map[string]any{},
			"tax_rates": []any{}, "discounts": []any{}, "billing_thresholds": nil}
	}
	return map[string]any{"start_date": ph.start, "end_date": ph.end, "items": items, "currency": currency,
		"proration_behavior": ph.prorationBehavior, "billing_cycle_anchor": "automatic", "metadata": map[string]any{},
		"add_invoice_items": []any{}, "default_tax_rates": []any{}, "discounts": []any{}, "trial_end": nil}
}

// currentPhase is the index of the phase under way at now, or -1.
func currentPhase(phases []schedPhase, now int64) int {
	for i, ph := range phases {
		if ph.start <= now && now < ph.end {
			return i
		}
	}
	return -1
}

// createSchedule implements POST /v1/subscription_schedules with
// from_subscription: one phase for the current period, end_behavior
// release. As on Stripe, from_subscription takes no other parameter.
func (d *StripeDouble) createSchedule(c *Call) *Response {
	f := c.Form
	subID := f.Get("from_subscription")
	if subID == "" {
		return badRequest("testrig: POST /v1/subscription_schedules supports only from_subscription", "from_subscription")
	}
	if p := paramOutside(f, []string{"expand", "from_subscription"}); p != "" {
		return badRequest(fmt.Sprintf("You cannot set `%s` if `from_subscription` is set.", p), p)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	o, ok := d.objects.subs[subID]
	if !ok {
		return missingRef("subscription", subID, "from_subscription")
	}
	m := o.decode()
	if sched := objectID(m["schedule"]); sched != "" {
		return badRequest(fmt.Sprintf("You cannot migrate a subscription that is already attached to a schedule: `%s`.", sched), "from_subscription")
	}
	if !statusMatches("", o.status) || o.status == string(stripe.SubscriptionStatusIncompleteExpired) {
		return badRequest(fmt.Sprintf("You cannot migrate a subscription whose status is `%s`.", o.status), "from_subscription")
	}
	start, end, resp := currentPeriod(m)
	if resp != nil {
		return resp
	}
	ph := schedPhase{start: start, end: end, prorationBehavior: "create_prorations"}
	for _, it := range subItems(m) {
		ph.items = append(ph.items, subItem{price: it.price, quantity: it.quantity})
	}
	now := d.now().Unix()
	id := d.nextIDLocked("sub_sched")
	s := map[string]any{
		"id": id, "object": "subscription_schedule", "livemode": false, "created": now, "status": "active",
		"customer": o.customer, "subscription": subID, "end_behavior": "release", "metadata": map[string]any{},
		"phases": []any{phaseObject(ph, str(m["currency"]))}, "released_at": nil, "released_subscription": nil,
		"canceled_at": nil, "completed_at": nil, "default_settings": nil, "test_clock": nil,
	}
	m["schedule"] = id
	d.saveSubscriptionLocked(o, m)
	d.seq++
	so := storedObject{id: id, customer: o.customer, status: "active", created: now, seq: d.seq}
	d.saveScheduleLocked(so, s)
	return JSONResponse(http.StatusOK, d.renderScheduleLocked(d.billing.schedules[id], expansions(f)))
}

func (d *StripeDouble) getSchedule(c *Call) *Response {
	d.mu.Lock()
	defer d.mu.Unlock()
	o, ok := d.billing.schedules[c.Param("id")]
	if !ok {
		return notFound("subscription_schedule", c.Param("id"), "schedule")
	}
	return JSONResponse(http.StatusOK, d.renderScheduleLocked(o, expansions(c.Form)))
}

// renderScheduleLocked adds current_phase (by the double's clock) and, when
// expanded, the subscription object.
func (d *StripeDouble) renderScheduleLocked(o storedObject, expand map[string]bool) map[string]any {
	m := o.decode()
	m["current_phase"] = nil
	phases := schedulePhases(m)
	if i := currentPhase(phases, d.now().Unix()); i >= 0 && o.status == "active" {
		m["current_phase"] = map[string]any{"start_date": phases[i].start, "end_date": phases[i].end}
	}
	if expand["subscription"] {
		if sub, ok := d.objects.subs[objectID(m["subscription"])]; ok {
			m["subscription"] = d.renderSubscriptionLocked(sub, nil)
		}
	}
	return m
}

func (d *StripeDouble) saveScheduleLocked(o storedObject, m map[string]any) {
	raw, err := json.Marshal(m)
	if err != nil {
		panic("testrig: encode subscription schedule: " + err.Error())
	}
	o.raw, o.status = raw, str(m["status"])
	d.billing.schedules[o.id] = o
}

// liveScheduleLocked finds the path's schedule and checks it may still
// change (verb names the attempt in Stripe's message).
func (d *StripeDouble) liveScheduleLocked(c *Call, verb string) (storedObject, map[string]any, *Response) {
	o, ok := d.billing.schedules[c.Param("id")]
	if !ok {
		return o, nil, notFound("subscription_schedule", c.Param("id"), "schedule")
	}
	if !slices.Contains(liveScheduleStatuses, o.status) {
		return o, nil, badRequest(fmt.Sprintf("You cannot %s a subscription schedule that is currently in the `%s` status. It must be in one of the following statuses: `not_started`, `active`.", verb, o.status), "")
	}
	return o, o.decode(), nil
}

// updateSchedule implements POST /v1/subscription_schedules/{id}: phases
// replace the schedule's phases (a change to the current phase applies to
// the subscription at once), end_behavior and metadata as sent.
func (d *StripeDouble) updateSchedule(c *Call) *Response {
	f := c.Form
	if resp := checkEnum(f, "end_behavior", "cancel", "none", "release", "renew"); resp != nil {
		return resp
	}
	if resp := checkEnum(f, "proration_behavior", prorationBehaviors...); resp != nil {
		return resp
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	o, m, resp := d.liveScheduleLocked(c, "update")
	if resp != nil {
		return resp
	}
	if hasParam(f, "phases") {
		phases, resp := d.parsePhasesLocked(f, schedulePhases(m))
		if resp != nil {
			return resp
		}
		currency := ""
		if raw, _ := m["phases"].([]any); len(raw) > 0 {
			currency = str(raw[0].(map[string]any)["currency"])
		}
		objs := make([]any, len(phases))
		for i, ph := range phases {
			objs[i] = phaseObject(ph, currency)
		}
		m["phases"] = objs
		sub := objectID(m["subscription"])
		if i := currentPhase(phases, d.now().Unix()); i >= 0 && sub != "" {
			d.applyPhaseLocked(sub, phases[i], false)
		}
	}
	if e := f.Get("end_behavior"); e != "" {
		m["end_behavior"] = e
	}
	mergeMetadata(m, f, "metadata")
	d.saveScheduleLocked(o, m)
	return JSONResponse(http.StatusOK, d.renderScheduleLocked(d.billing.schedules[o.id], expansions(f)))
}

// parsePhasesLocked reads phases[i][...] with Stripe's rules: the first
// phase anchors the dates and must keep the current phase's start, later
// phases follow on, each needs items with known recurring prices, and
// end_date and iterations exclude each other (neither means 1 iteration).
func (d *StripeDouble) parsePhasesLocked(f url.Values, old []schedPhase) ([]schedPhase, *Response) {
	groups := indexedForm(f, "phases")
	if len(groups) == 0 {
		return nil, badRequest("testrig: send phases as phases[i][...]", "phases")
	}
	now := d.now().Unix()
	var phases []schedPhase
	for i, g := range groups {
		param := fmt.Sprintf("phases[%d]", g.index)
		if resp := checkValue(g.form.Get("proration_behavior"), param+"[proration_behavior]", prorationBehaviors...); resp != nil {
			return nil, resp
		}
		ph := schedPhase{prorationBehavior: g.form.Get("proration_behavior")}
		if ph.prorationBehavior == "" {
			ph.prorationBehavior = "create_prorations"
		}
		start, set, err := phaseDate(g.form.Get("start_date"), now)
		switch {
		case err != nil:
			return nil, invalidInteger(param+"[start_date]", g.form.Get("start_date"))
		case i == 0 && !set:
			return nil, badRequest("The subscription schedule update is missing at least one phase with a `start_date` to anchor end dates to.", "phases")
		case i == 0:
			if cur := currentPhase(old, now); cur >= 0 && start != old[cur].start {
				return nil, badRequest("You can not modify the start date of the current phase.", param+"[start_date]")
			}
		case set && start != phases[i-1].end:
			return nil, badRequest(fmt.Sprintf("The start_date of %s must be the end_date of the phase before it.", param), param+"[start_date]")
		default:
			start = phases[i-1].end
		}
		ph.start = start
		items, resp := d.phaseItemsLocked(g.form, param)
		if resp != nil {
			return nil, resp
		}
		ph.items = items
		if ph.end, resp = d.phaseEndLocked(g.form, param, ph, now); resp != nil {
			return nil, resp
		}
		phases = append(phases, ph)
	}
	return phases, nil
}

// phaseDate reads a phase timestamp: unix seconds or "now".
func phaseDate(s string, now int64) (t int64, set bool, err error) {
	switch s {
	case "":
		return 0, false, nil
	case "now":
		return now, true, nil
	}
	t, err = strconv.ParseInt(s, 10, 64)
	return t, true, err
}

// phaseItemsLocked reads phases[i][items][j][price|quantity].
func (d *StripeDouble) phaseItemsLocked(g url.Values, param string) ([]subItem, *Response) {
	groups := indexedForm(g, "items")
	if len(groups) == 0 {
		return nil, missingParam(param + "[items]")
	}
	var items []subItem
	for _, ig := range groups {
		ip := fmt.Sprintf("%s[items][%d]", param, ig.index)
		id := ig.form.Get("price")
		if id == "" {
			return nil, missingParam(ip + "[price]")
		}
		p, _, ok := d.priceLocked(id)
		if !ok {
			return nil, missingRef("price", id, ip+"[price]")
		}
		if !p.recurring() {
			return nil, badRequest("The price specified is set to `type=one_time` but this field only accepts prices with `type=recurring`.", ip+"[price]")
		}
		it := subItem{price: id, quantity: 1}
		if p.metered() {
			it.quantity = 0
		}
		if s := ig.form.Get("quantity"); s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 {
				return nil, invalidInteger(ip+"[quantity]", s)
			}
			if p.metered() {
				return nil, badRequest("You cannot set the quantity for metered plans.", ip+"[quantity]")
			}
			it.quantity = n
		}
		items = append(items, it)
	}
	return items, nil
}

// phaseEndLocked is a phase's end: end_date, or iterations (default 1) of
// its first price's interval.
func (d *StripeDouble) phaseEndLocked(g url.Values, param string, ph schedPhase, now int64) (int64, *Response) {
	endS, iterS := g.Get("end_date"), g.Get("iterations")
	if endS != "" && iterS != "" {
		return 0, badRequest("You may only specify one of these parameters: end_date, iterations.", param)
	}
	if endS != "" {
		end, _, err := phaseDate(endS, now)
		if err != nil {
			return 0, invalidInteger(param+"[end_date]", endS)
		}
		if end <= ph.start {
			return 0, badRequest(fmt.Sprintf("The end_date of %s must be after its start_date.", param), param+"[end_date]")
		}
		return end, nil
	}
	n := int64(1)
	if iterS != "" {
		var err error
		if n, err = strconv.ParseInt(iterS, 10, 64); err != nil || n < 1 {
			return 0, invalidInteger(param+"[iterations]", iterS)
		}
	}
	p, _, _ := d.priceLocked(ph.items[0].price)
	return addInterval(ph.start, p.interval, p.intervalCount*n), nil
}

// applyPhaseLocked gives subscription subID the phase's items (an item
// keeps its id while its price stays) and, with newPeriod, a current period
// starting at the phase's start.
func (d *StripeDouble) applyPhaseLocked(subID string, ph schedPhase, newPeriod bool) {
	o := d.objects.subs[subID]
	m := o.decode()
	old := subItems(m)
	used := make(map[string]bool)
	var items []subItem
	for _, want := range ph.items {
		it := subItem{price: want.price}
		for _, prev := range old {
			if prev.price == want.price && !used[prev.id] {
				it, used[prev.id] = prev, true
				break
			}
		}
		if it.id == "" {
			it.id = d.nextIDLocked("si")
		}
		it.quantity = want.quantity
		items = append(items, it)
	}
	d.setSubItemsLocked(m, items)
	if newPeriod && len(items) > 0 {
		p, _ := d.itemPriceLocked(items[0])
		end := addInterval(ph.start, p.interval, p.intervalCount)
		if ph.end > ph.start && ph.end < end {
			end = ph.end
		}
		m["current_period_start"], m["current_period_end"] = ph.start, end
	}
	d.saveSubscriptionLocked(o, m)
}

// releaseSchedule implements POST /v1/subscription_schedules/{id}/release:
// the subscription stays, no longer managed by the schedule.
func (d *StripeDouble) releaseSchedule(c *Call) *Response {
	d.mu.Lock()
	defer d.mu.Unlock()
	o, m, resp := d.liveScheduleLocked(c, "release")
	if resp != nil {
		return resp
	}
	subID := objectID(m["subscription"])
	m["status"], m["released_at"], m["released_subscription"], m["subscription"] = "released", d.now().Unix(), nullable(subID), nil
	if so, ok := d.objects.subs[subID]; ok {
		sm := so.decode()
		sm["schedule"] = nil
		d.saveSubscriptionLocked(so, sm)
	}
	d.saveScheduleLocked(o, m)
	return JSONResponse(http.StatusOK, d.renderScheduleLocked(d.billing.schedules[o.id], expansions(c.Form)))
}

// cancelSchedule implements POST /v1/subscription_schedules/{id}/cancel:
// the schedule and its subscription are canceled at once.
func (d *StripeDouble) cancelSchedule(c *Call) *Response {
	d.mu.Lock()
	defer d.mu.Unlock()
	o, m, resp := d.liveScheduleLocked(c, "cancel")
	if resp != nil {
		return resp
	}
	now := d.now().Unix()
	m["status"], m["canceled_at"] = "canceled", now
	if so, ok := d.objects.subs[objectID(m["subscription"])]; ok {
		sm := so.decode()
		sm["status"], sm["canceled_at"], sm["ended_at"] = string(stripe.SubscriptionStatusCanceled), now, now
		d.saveSubscriptionLocked(so, sm)
	}
	d.saveScheduleLocked(o, m)
	return JSONResponse(http.StatusOK, d.renderScheduleLocked(d.billing.schedules[o.id], expansions(c.Form)))
}
