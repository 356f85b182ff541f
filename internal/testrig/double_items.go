package testrig

import (
	"net/http"
	"net/url"

	"github.com/stripe/stripe-go/v76"
)

// subscriptionItemParams are what POST /v1/subscription_items/{id} takes
// here.
var subscriptionItemParams = []string{"quantity", "price", "proration_behavior", "proration_date", "payment_behavior", "metadata", "expand"}

func (d *StripeDouble) registerItemRoutes() {
	d.Handle("POST /v1/subscription_items/{id}", d.updateSubscriptionItem)
}

// updateSubscriptionItem implements POST /v1/subscription_items/{id} for
// quantity and price, with proration_behavior (default create_prorations),
// proration_date and payment_behavior: the item's subscription changes as
// an update of its items[] would, and is billed alike
// (double_prorations.go). It answers the item.
func (d *StripeDouble) updateSubscriptionItem(c *Call) *Response {
	f := c.Form
	if resp := checkEnum(f, "proration_behavior", prorationBehaviors...); resp != nil {
		return resp
	}
	if resp := checkEnum(f, "payment_behavior", paymentBehaviors...); resp != nil {
		return resp
	}
	if p := paramOutside(f, subscriptionItemParams); p != "" {
		return badRequest("Received unknown parameter: "+p, p)
	}
	id := c.Param("id")
	d.mu.Lock()
	defer d.mu.Unlock()
	o, ok := d.subscriptionOfItemLocked(id)
	if !ok {
		return notFound("subscription_item", id, "id")
	}
	m := o.decode()
	if str(m["status"]) == string(stripe.SubscriptionStatusCanceled) {
		return badRequest("A canceled subscription's items cannot be updated.", "")
	}
	change := url.Values{"id": {id}}
	for _, k := range []string{"price", "quantity"} {
		if f.Has(k) {
			change[k] = f[k]
		}
	}
	old := subItems(m)
	items, resp := d.changeItemsLocked(old, []formGroup{{index: 0, form: change}}, "item")
	if resp != nil {
		return resp
	}
	if resp := d.prorateUpdateLocked(o, m, old, items, f); resp != nil {
		return resp
	}
	d.setSubItemsLocked(m, items)
	d.saveSubscriptionLocked(o, m)
	for _, it := range subItems(m) {
		if it.id == id {
			return JSONResponse(http.StatusOK, it.obj)
		}
	}
	return notFound("subscription_item", id, "id")
}

// subscriptionOfItemLocked finds the subscription holding an item.
func (d *StripeDouble) subscriptionOfItemLocked(item string) (storedObject, bool) {
	for _, o := range d.objects.subs {
		for _, it := range subItems(o.decode()) {
			if it.id == item {
				return o, true
			}
		}
	}
	return storedObject{}, false
}

// ItemQuantity returns the quantity of a subscription item as stored.
func (d *StripeDouble) ItemQuantity(item string) (int64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	o, ok := d.subscriptionOfItemLocked(item)
	if !ok {
		return 0, false
	}
	for _, it := range subItems(o.decode()) {
		if it.id == item {
			return it.quantity, true
		}
	}
	return 0, false
}
