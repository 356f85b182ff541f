package testrig

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// upcomingInvoice implements GET /v1/invoices/upcoming for an existing
// subscription, previewing subscription_items changes with prorations
// computed to the second, as Stripe does: with
// subscription_proration_behavior=always_invoice and a change that
// prorates, the invoice the update would create at once; otherwise the
// next regular invoice, pending invoice items included.
func (d *StripeDouble) upcomingInvoice(c *Call) *Response {
	f := c.Form
	if resp := checkEnum(f, "subscription_proration_behavior", prorationBehaviors...); resp != nil {
		return resp
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	o, resp := d.upcomingSubscriptionLocked(f)
	if resp != nil {
		return resp
	}
	m := o.decode()
	start, end, resp := currentPeriod(m)
	if resp != nil {
		return resp
	}
	if o.status == string(stripe.SubscriptionStatusCanceled) || o.status == string(stripe.SubscriptionStatusIncompleteExpired) {
		return noUpcoming(o.customer)
	}
	old := subItems(m)
	items, resp := d.changeItemsLocked(old, indexedForm(f, "subscription_items"), "subscription_items")
	if resp != nil {
		return resp
	}
	p, resp := prorationDate(f, "subscription_proration_date", m, d.now().Unix(), true)
	if resp != nil {
		return resp
	}
	p = min(max(p, start), end) // a defaulted "now" outside the period prorates nothing, never negatively
	behavior := f.Get("subscription_proration_behavior")
	var prorations []map[string]any
	if behavior != "none" {
		prorations = d.prorationLinesLocked(o.id, old, items, p, start, end)
	}
	lines := d.pendingLinesLocked(o.id)
	if behavior == "always_invoice" && len(prorations) > 0 {
		// What the update would invoice at once (double_prorations.go).
		inv := upcomingInvoiceObject(o, m, f, append(lines, prorations...), p, p)
		inv["billing_reason"], inv["period_start"], inv["created"], inv["next_payment_attempt"] = "subscription_update", p, p, p
		return JSONResponse(http.StatusOK, inv)
	}
	lines = append(lines, prorations...)
	if m["cancel_at_period_end"] != true {
		for _, it := range items {
			lines = append(lines, d.renewalLineLocked(o.id, it, end))
		}
	}
	if len(lines) == 0 {
		return noUpcoming(o.customer)
	}
	return JSONResponse(http.StatusOK, upcomingInvoiceObject(o, m, f, lines, p, end))
}

// upcomingSubscriptionLocked finds the subscription an upcoming-invoice
// request is about: the one named (which must belong to the customer, if
// one is named too), else the customer's next to renew.
func (d *StripeDouble) upcomingSubscriptionLocked(f url.Values) (storedObject, *Response) {
	customer, id := f.Get("customer"), f.Get("subscription")
	if hasParam(f, "schedule") {
		return storedObject{}, badRequest("testrig: previewing a subscription schedule (schedule) is not supported", "schedule")
	}
	if customer == "" && id == "" {
		return storedObject{}, missingParam("customer")
	}
	if _, ok := d.objects.customers[customer]; customer != "" && !ok {
		return storedObject{}, missingRef("customer", customer, "customer")
	}
	if id == "" {
		if hasParam(f, "subscription_items") {
			return storedObject{}, badRequest("testrig: previewing a new subscription (subscription_items without subscription) is not supported", "subscription")
		}
		var next storedObject
		for sid := range d.objects.subsByCustomer[customer] {
			s := d.objects.subs[sid]
			end := num(s.decode()["current_period_end"])
			if statusMatches("", s.status) && (next.id == "" || end < num(next.decode()["current_period_end"])) {
				next = s
			}
		}
		if next.id == "" {
			return storedObject{}, noUpcoming(customer)
		}
		return next, nil
	}
	o, ok := d.objects.subs[id]
	if !ok {
		return storedObject{}, missingRef("subscription", id, "subscription")
	}
	if customer != "" && o.customer != customer {
		return storedObject{}, badRequest(fmt.Sprintf("The subscription `%s` does not belong to the customer `%s`.", id, customer), "subscription")
	}
	return o, nil
}

func noUpcoming(customer string) *Response {
	return ErrorResponse(http.StatusNotFound, "invalid_request_error", "invoice_upcoming_none",
		"No upcoming invoices for customer: "+customer, "")
}

// prorationLinesLocked credits the unused time of every item that changed
// and charges the remaining time of what replaced it, from proration date p
// to the period end. Metered prices are not prorated.
func (d *StripeDouble) prorationLinesLocked(subID string, old, items []subItem, p, start, end int64) []map[string]any {
	frac := float64(end-p) / float64(end-start)
	date := time.Unix(p, 0).UTC().Format("02 Jan 2006")
	var lines []map[string]any
	prorate := func(it subItem, sign float64, what string) {
		price, obj := d.itemPriceLocked(it)
		if price.metered() {
			return
		}
		amount := int64(sign * math.Round(float64(price.unitAmount*it.quantity)*frac))
		desc := fmt.Sprintf("%s time on %s after %s", what, quantityLabel(it.quantity, it.price), date)
		lines = append(lines, d.invoiceLineLocked(subID, it, price, obj, amount, true, desc, p, end))
	}
	for _, o := range old {
		n, ok := findItem(items, o.id)
		if ok && n.price == o.price && n.quantity == o.quantity {
			continue
		}
		prorate(o, -1, "Unused")
		if ok {
			prorate(n, 1, "Remaining")
		}
	}
	for _, n := range items {
		if _, ok := findItem(old, n.id); !ok {
			prorate(n, 1, "Remaining")
		}
	}
	return lines
}

// renewalLineLocked charges an item's next period, starting at end.
func (d *StripeDouble) renewalLineLocked(subID string, it subItem, end int64) map[string]any {
	price, obj := d.itemPriceLocked(it)
	next := addInterval(end, price.interval, price.intervalCount)
	desc := fmt.Sprintf("%s (at %d %s / %s)", quantityLabel(it.quantity, it.price), price.unitAmount, price.currency, price.interval)
	return d.invoiceLineLocked(subID, it, price, obj, price.unitAmount*it.quantity, false, desc, end, next)
}

func (d *StripeDouble) invoiceLineLocked(subID string, it subItem, price priceInfo, priceObj map[string]any,
	amount int64, proration bool, desc string, start, end int64) map[string]any {
	collapse(priceObj, nil, "product")
	return map[string]any{
		"id": d.nextIDLocked("il_tmp"), "object": "line_item", "livemode": false, "type": "subscription",
		"amount": amount, "amount_excluding_tax": amount, "currency": price.currency, "description": desc,
		"proration": proration, "quantity": it.quantity, "price": priceObj, "period": map[string]any{"start": start, "end": end},
		"subscription": subID, "subscription_item": it.id, "discountable": !proration, "metadata": map[string]any{},
	}
}

// upcomingInvoiceObject is the preview invoice: no id, lines summed; a
// negative total is owed to the customer, so nothing is due.
func upcomingInvoiceObject(o storedObject, m map[string]any, f url.Values, lines []map[string]any, p, end int64) map[string]any {
	total := sumLines(lines)
	currency := invoiceCurrency(m, lines)
	inv := map[string]any{
		"object": "invoice", "livemode": false, "status": "draft", "billing_reason": "upcoming",
		"customer": o.customer, "subscription": o.id, "currency": currency,
		"subtotal": total, "subtotal_excluding_tax": total, "total": total, "total_excluding_tax": total,
		"amount_due": max(total, 0), "amount_remaining": max(total, 0), "amount_paid": 0, "starting_balance": 0,
		"created": end, "next_payment_attempt": end, "period_start": num(m["current_period_start"]), "period_end": end,
		"lines": map[string]any{"object": "list", "data": lines, "has_more": false, "total_count": len(lines),
			"url": "/v1/invoices/upcoming/lines?subscription=" + o.id},
	}
	if f.Get("subscription_proration_date") != "" || hasParam(f, "subscription_items") {
		inv["subscription_proration_date"] = p
	}
	return inv
}

func findItem(items []subItem, id string) (subItem, bool) {
	for _, it := range items {
		if it.id == id {
			return it, true
		}
	}
	return subItem{}, false
}

// quantityLabel is how Stripe names n of something in line descriptions.
func quantityLabel(n int64, what string) string {
	if n == 1 {
		return what
	}
	return fmt.Sprintf("%d × %s", n, what)
}
