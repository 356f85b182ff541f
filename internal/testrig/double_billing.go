package testrig

import (
	"net/http"

	"github.com/stripe/stripe-go/v76"
)

// billingState holds the double's checkout sessions, invoices, prices and
// subscription schedules, guarded by StripeDouble.mu.
type billingState struct {
	sessions       map[string]storedObject
	sessionSubData map[string]CheckoutSubscriptionData // session id -> its subscription_data
	invoices       map[string]storedObject
	prices         map[string]storedObject
	schedules      map[string]storedObject
	// pending holds each subscription's pending invoice items (proration
	// lines of create_prorations updates), billed with its next invoice.
	pending map[string][]map[string]any
}

func newBillingState() billingState {
	return billingState{
		sessions:       make(map[string]storedObject),
		sessionSubData: make(map[string]CheckoutSubscriptionData),
		invoices:       make(map[string]storedObject),
		prices:         make(map[string]storedObject),
		schedules:      make(map[string]storedObject),
		pending:        make(map[string][]map[string]any),
	}
}

// Fields Stripe answers as ids unless expanded.
var (
	sessionExpandable = []string{"customer", "subscription", "invoice", "payment_intent", "setup_intent", "payment_link"}
	invoiceExpandable = []string{"customer", "subscription", "charge", "payment_intent", "default_payment_method",
		"default_source", "test_clock", "on_behalf_of", "application"}
)

func (d *StripeDouble) registerBillingRoutes() {
	d.Handle("GET /v1/checkout/sessions/{id}", d.getCheckoutSession)
	d.Handle("GET /v1/invoices/{id}", d.getInvoice)
	d.Handle("GET /v1/invoices", d.listInvoices)
	d.registerCheckoutRoutes()
	d.registerCheckoutExpireRoute()
	d.registerSubscriptionRoutes()
	d.registerScheduleRoutes()
	d.registerItemRoutes()
}

// PutCheckoutSession adds or replaces a Checkout Session (keyed by s.ID).
// Its subscription is answered as an id, or, with expand[]=subscription,
// as the double's own subscription of that id.
func (d *StripeDouble) PutCheckoutSession(s *stripe.CheckoutSession) {
	d.tb.Helper()
	raw := d.mustEncode(s.ID, s, "checkout.session")
	customer := ""
	if s.Customer != nil {
		customer = s.Customer.ID
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	d.billing.sessions[s.ID] = storedObject{id: s.ID, customer: customer, status: string(s.Status),
		created: s.Created, seq: d.seq, raw: raw}
}

// PutInvoice adds or replaces an invoice (keyed by in.ID, listed by
// in.Customer.ID and in.Status).
func (d *StripeDouble) PutInvoice(in *stripe.Invoice) {
	d.tb.Helper()
	if in.Customer == nil || in.Customer.ID == "" {
		d.tb.Fatalf("testrig: PutInvoice(%q): Customer.ID is required", in.ID)
	}
	raw := d.mustEncode(in.ID, in, "invoice")
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	d.billing.invoices[in.ID] = storedObject{id: in.ID, customer: in.Customer.ID, status: string(in.Status),
		created: in.Created, seq: d.seq, raw: raw}
}

func (d *StripeDouble) getCheckoutSession(c *Call) *Response {
	d.mu.Lock()
	defer d.mu.Unlock()
	o, ok := d.billing.sessions[c.Param("id")]
	if !ok {
		return notFound("checkout.session", c.Param("id"), "session")
	}
	m := o.decode()
	expand := expansions(c.Form)
	collapse(m, expand, sessionExpandable...)
	if expand["subscription"] {
		if id := objectID(m["subscription"]); id != "" {
			if sub, ok := d.objects.subs[id]; ok {
				m["subscription"] = d.renderSubscriptionLocked(sub, nil)
			}
		}
	}
	return JSONResponse(http.StatusOK, m)
}

func (d *StripeDouble) getInvoice(c *Call) *Response {
	return d.getStored(c, d.billing.invoices, "invoice", "invoice", invoiceExpandable...)
}

// listInvoices filters like Stripe: by customer and by status (draft, open,
// paid, uncollectible, void), newest first.
func (d *StripeDouble) listInvoices(c *Call) *Response {
	customer, status := c.Form.Get("customer"), c.Form.Get("status")
	d.mu.Lock()
	var objs []storedObject
	for _, o := range d.billing.invoices {
		if (customer == "" || o.customer == customer) && (status == "" || o.status == status) {
			objs = append(objs, o)
		}
	}
	d.mu.Unlock()
	sortNewestFirst(objs)
	expand := expansions(c.Form)
	items := make([]map[string]any, len(objs))
	for i, o := range objs {
		items[i] = o.decode()
		collapse(items[i], expand, invoiceExpandable...)
	}
	return listPage(items, c.Form, "/v1/invoices", "invoice")
}

// objectID is the id of a field that holds either an id or an object.
func objectID(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case map[string]any:
		id, _ := x["id"].(string)
		return id
	}
	return ""
}
