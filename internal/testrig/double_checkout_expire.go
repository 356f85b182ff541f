package testrig

import (
	"encoding/json"
	"fmt"
	"net/http"
)

func (d *StripeDouble) registerCheckoutExpireRoute() {
	d.Handle("POST /v1/checkout/sessions/{id}/expire", d.expireCheckoutSession)
}

// expireCheckoutSession ends an open session, as Stripe does: it can no
// longer be paid. Only open sessions can be expired.
func (d *StripeDouble) expireCheckoutSession(c *Call) *Response {
	d.mu.Lock()
	defer d.mu.Unlock()
	id := c.Param("id")
	o, ok := d.billing.sessions[id]
	if !ok {
		return notFound("checkout.session", id, "session")
	}
	if o.status != "open" {
		return ErrorResponse(http.StatusBadRequest, "invalid_request_error", "",
			fmt.Sprintf("Only Checkout Sessions with a status in [\"open\"] can be expired. This Checkout Session has a status of %q.", o.status), "")
	}
	return JSONResponse(http.StatusOK, d.setSessionStatusLocked(id, "expired", nil))
}

// CompleteCheckoutSession marks a session complete, as if the customer
// paid: it then names customer (and, in subscription mode, subscription).
func (d *StripeDouble) CompleteCheckoutSession(id, customer, subscription string) {
	d.tb.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.billing.sessions[id]; !ok {
		d.tb.Fatalf("testrig: CompleteCheckoutSession(%q): no such session", id)
	}
	set := map[string]any{"customer": customer, "payment_status": "paid"}
	if subscription != "" {
		set["subscription"] = subscription
	}
	d.setSessionStatusLocked(id, "complete", set)
}

func (d *StripeDouble) setSessionStatusLocked(id, status string, set map[string]any) map[string]any {
	o := d.billing.sessions[id]
	m := o.decode()
	m["status"] = status
	for k, v := range set {
		m[k] = v
	}
	raw, err := json.Marshal(m)
	if err != nil {
		d.tb.Fatalf("testrig: encode session %s: %v", id, err)
	}
	o.raw, o.status = raw, status
	if c, ok := set["customer"].(string); ok {
		o.customer = c
	}
	d.billing.sessions[id] = o
	return m
}
