package testrig

import (
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/stripe/stripe-go/v76"
)

// How the double bills a subscription update that changes items (a price
// or a quantity), as Stripe does. The update prorates as of its own
// proration_date (default now), item by item: the unused time of what left
// is credited and the remaining time of what came is charged, to the
// second (prorationLinesLocked). Then, by proration_behavior:
//
//   - create_prorations (Stripe's default): the proration lines become the
//     subscription's pending invoice items, billed with its next invoice;
//   - always_invoice: the pending invoice items and the new proration lines
//     are invoiced at once; the invoice is paid at once (the double's
//     payments always succeed) and becomes the subscription's
//     latest_invoice; a negative total is not refunded (amount_due 0);
//   - none: nothing is prorated.
//
// GET /v1/invoices/upcoming previews the same update: with always_invoice
// and a change that prorates, it answers the invoice the update would
// create at once; otherwise the next regular invoice (pending items, the
// change's prorations unless none, the renewal). The charge is worked out
// from the update's own parameters, never from an earlier preview, so a
// preview and an update agree only when they are asked the same.
//
// Not modelled: customer credit balances, discounts, taxes, failed
// payments of proration invoices.

// prorateUpdateLocked bills an update of subscription m from items old to
// items, and records the effect in m (latest_invoice) and in the pending
// invoice items.
func (d *StripeDouble) prorateUpdateLocked(o storedObject, m map[string]any, old, items []subItem, f url.Values) *Response {
	behavior := f.Get("proration_behavior")
	if behavior == "" {
		behavior = "create_prorations"
	}
	if behavior == "none" || !itemsChanged(old, items) {
		return nil
	}
	start, end, resp := currentPeriod(m)
	if resp != nil {
		return resp
	}
	p, resp := prorationDate(f, "proration_date", m, d.now().Unix(), false)
	if resp != nil {
		return resp
	}
	p = min(max(p, start), end)
	lines := d.prorationLinesLocked(o.id, old, items, p, start, end)
	if len(lines) == 0 {
		return nil
	}
	if behavior == "create_prorations" {
		for _, l := range lines {
			l["invoice_item"] = d.nextIDLocked("ii")
		}
		d.billing.pending[o.id] = append(d.billing.pending[o.id], lines...)
		return nil
	}
	lines = append(d.billing.pending[o.id], lines...)
	delete(d.billing.pending, o.id)
	m["latest_invoice"] = d.invoiceNowLocked(o, m, lines, p)
	return nil
}

// itemsChanged reports whether an update changed any item's price or
// quantity, or added or removed an item.
func itemsChanged(old, items []subItem) bool {
	if len(old) != len(items) {
		return true
	}
	for _, it := range items {
		o, ok := findItem(old, it.id)
		if !ok || o.price != it.price || o.quantity != it.quantity {
			return true
		}
	}
	return false
}

// invoiceNowLocked creates, finalizes and pays an invoice of lines for
// subscription o, as always_invoice does, and returns its id.
func (d *StripeDouble) invoiceNowLocked(o storedObject, m map[string]any, lines []map[string]any, p int64) string {
	id := d.nextIDLocked("in")
	total := sumLines(lines)
	due := max(total, 0)
	now := d.now().Unix()
	inv := map[string]any{
		"id": id, "object": "invoice", "livemode": false, "customer": o.customer, "subscription": o.id,
		"status": string(stripe.InvoiceStatusPaid), "paid": true, "attempted": true, "attempt_count": 1,
		"billing_reason": "subscription_update", "collection_method": "charge_automatically",
		"currency": invoiceCurrency(m, lines), "subtotal": total, "subtotal_excluding_tax": total,
		"total": total, "total_excluding_tax": total, "amount_due": due, "amount_paid": due, "amount_remaining": 0,
		"starting_balance": 0, "created": now, "period_start": p, "period_end": p, "next_payment_attempt": nil,
		"hosted_invoice_url": "https://invoice.stripe.test/i/" + id, "invoice_pdf": "https://pay.stripe.test/invoice/" + id + "/pdf",
		"number": fmt.Sprintf("TESTRIG-%04d", d.seq),
		"lines": map[string]any{"object": "list", "data": lines, "has_more": false, "total_count": len(lines),
			"url": "/v1/invoices/" + id + "/lines"},
	}
	raw, err := json.Marshal(inv)
	if err != nil {
		panic("testrig: encode invoice: " + err.Error())
	}
	d.seq++
	d.billing.invoices[id] = storedObject{id: id, customer: o.customer, status: string(stripe.InvoiceStatusPaid),
		created: now, seq: d.seq, raw: raw}
	return id
}

// Invoice returns an invoice as stored (put, or created by an update with
// proration_behavior=always_invoice), decoded into stripe-go's type.
func (d *StripeDouble) Invoice(id string) (*stripe.Invoice, bool) {
	return storedAs[stripe.Invoice](d, d.billing.invoices, "invoice", id)
}

// PendingInvoiceItems returns the amounts of a subscription's pending
// invoice items (prorations waiting for its next invoice), oldest first.
func (d *StripeDouble) PendingInvoiceItems(sub string) []int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []int64
	for _, l := range d.billing.pending[sub] {
		out = append(out, lineAmount(l))
	}
	return out
}

// pendingLinesLocked is a copy of a subscription's pending invoice items as
// invoice lines.
func (d *StripeDouble) pendingLinesLocked(sub string) []map[string]any {
	out := make([]map[string]any, 0, len(d.billing.pending[sub]))
	for _, l := range d.billing.pending[sub] {
		c := make(map[string]any, len(l))
		for k, v := range l {
			c[k] = v
		}
		out = append(out, c)
	}
	return out
}

func sumLines(lines []map[string]any) int64 {
	var total int64
	for _, l := range lines {
		total += lineAmount(l)
	}
	return total
}

// lineAmount reads a line's amount, built here (int64) or decoded (float64).
func lineAmount(l map[string]any) int64 {
	switch v := l["amount"].(type) {
	case int64:
		return v
	case float64:
		return int64(v)
	}
	return 0
}

// invoiceCurrency is the subscription's currency, else its first line's.
func invoiceCurrency(m map[string]any, lines []map[string]any) string {
	if c := str(m["currency"]); c != "" {
		return c
	}
	if len(lines) > 0 {
		return str(lines[0]["currency"])
	}
	return ""
}
