package testrig

import (
	"encoding/json"
	"net/http"

	"github.com/stripe/stripe-go/v76"
)

// objectState is the double's Stripe data, guarded by StripeDouble.mu.
type objectState struct {
	customers      map[string]storedObject
	subs           map[string]storedObject
	subsByCustomer map[string]map[string]bool
	entitlements   map[string][]map[string]any // customer -> active entitlements
	events         map[string]storedObject
}

func newObjectState() objectState {
	return objectState{
		customers:      make(map[string]storedObject),
		subs:           make(map[string]storedObject),
		subsByCustomer: make(map[string]map[string]bool),
		entitlements:   make(map[string][]map[string]any),
		events:         make(map[string]storedObject),
	}
}

// Fields Stripe answers as ids unless expanded.
var (
	subscriptionExpandable = []string{"customer", "default_payment_method", "default_source", "latest_invoice",
		"pending_setup_intent", "schedule", "test_clock", "application", "on_behalf_of"}
	customerExpandable = []string{"default_source", "test_clock"}
)

func (d *StripeDouble) registerObjectRoutes() {
	d.Handle("GET /v1/customers/{id}", d.getCustomer)
	d.Handle("GET /v1/subscriptions/{id}", d.getSubscription)
	d.Handle("GET /v1/subscriptions", d.listSubscriptions)
	d.Handle("GET /v1/entitlements/active_entitlements", d.listActiveEntitlements)
	d.Handle("GET /v1/events/{id}", d.getEvent)
	d.Handle("GET /v1/events", d.listEvents)
}

// PutCustomer adds or replaces a customer (keyed by c.ID).
func (d *StripeDouble) PutCustomer(c *stripe.Customer) {
	d.tb.Helper()
	raw := d.mustEncode(c.ID, c, "customer")
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	d.objects.customers[c.ID] = storedObject{id: c.ID, created: c.Created, seq: d.seq, raw: raw}
}

// PutSubscription adds or replaces a subscription (keyed by s.ID, indexed by
// s.Customer.ID, which must be set).
func (d *StripeDouble) PutSubscription(s *stripe.Subscription) {
	d.tb.Helper()
	if s.Customer == nil || s.Customer.ID == "" {
		d.tb.Fatalf("testrig: PutSubscription(%q): Customer.ID is required", s.ID)
	}
	raw := d.mustEncode(s.ID, s, "subscription")
	d.mu.Lock()
	defer d.mu.Unlock()
	d.deleteSubscriptionLocked(s.ID)
	d.seq++
	d.objects.subs[s.ID] = storedObject{id: s.ID, customer: s.Customer.ID, status: string(s.Status),
		created: s.Created, seq: d.seq, raw: raw}
	if d.objects.subsByCustomer[s.Customer.ID] == nil {
		d.objects.subsByCustomer[s.Customer.ID] = make(map[string]bool)
	}
	d.objects.subsByCustomer[s.Customer.ID][s.ID] = true
}

// DeleteSubscription removes a subscription: it is then unknown (404), as
// opposed to a subscription put with status canceled.
func (d *StripeDouble) DeleteSubscription(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.deleteSubscriptionLocked(id)
}

func (d *StripeDouble) deleteSubscriptionLocked(id string) {
	if old, ok := d.objects.subs[id]; ok {
		delete(d.objects.subsByCustomer[old.customer], id)
		delete(d.objects.subs, id)
	}
}

// SetActiveEntitlements replaces the customer's active entitlements with one
// per lookup key (feature id "feat_test_<lookup key>").
func (d *StripeDouble) SetActiveEntitlements(customerID string, lookupKeys ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ents := make([]map[string]any, 0, len(lookupKeys))
	for _, k := range lookupKeys {
		ents = append(ents, map[string]any{
			"id":         d.nextIDLocked("ent"),
			"object":     "entitlements.active_entitlement",
			"feature":    "feat_test_" + k,
			"livemode":   false,
			"lookup_key": k,
		})
	}
	d.objects.entitlements[customerID] = ents
}

// PutEvent adds or replaces an event served by GET /v1/events/{id}.
func (d *StripeDouble) PutEvent(e *stripe.Event) {
	d.tb.Helper()
	raw := d.mustEncode(e.ID, e, "event")
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	d.objects.events[e.ID] = storedObject{id: e.ID, created: e.Created, seq: d.seq, raw: raw}
}

func (d *StripeDouble) mustEncode(id string, v any, object string) json.RawMessage {
	d.tb.Helper()
	if id == "" {
		d.tb.Fatalf("testrig: put %s: empty ID", object)
	}
	raw, err := encodeObject(v, object)
	if err != nil {
		d.tb.Fatalf("testrig: put %s %s: %v", object, id, err)
	}
	return raw
}

// getStored answers GET of one stored object by the path's {id}: Stripe's
// 404 (naming param) when missing, expandable fields as ids unless expanded.
func (d *StripeDouble) getStored(c *Call, objects map[string]storedObject, noun, param string, expandable ...string) *Response {
	d.mu.Lock()
	o, ok := objects[c.Param("id")]
	d.mu.Unlock()
	if !ok {
		return notFound(noun, c.Param("id"), param)
	}
	m := o.decode()
	collapse(m, expansions(c.Form), expandable...)
	return JSONResponse(http.StatusOK, m)
}

func (d *StripeDouble) getCustomer(c *Call) *Response {
	return d.getStored(c, d.objects.customers, "customer", "id", customerExpandable...)
}

func (d *StripeDouble) getSubscription(c *Call) *Response {
	d.mu.Lock()
	defer d.mu.Unlock()
	o, miss := d.pathSubscriptionLocked(c)
	if miss != nil {
		return miss
	}
	return JSONResponse(http.StatusOK, d.renderSubscriptionLocked(o, expansions(c.Form)))
}

// pathSubscriptionLocked finds the subscription named by the URL's {id},
// or answers Stripe's 404.
func (d *StripeDouble) pathSubscriptionLocked(c *Call) (storedObject, *Response) {
	o, ok := d.objects.subs[c.Param("id")]
	if !ok {
		return storedObject{}, notFound("subscription", c.Param("id"), "id")
	}
	return o, nil
}

// renderSubscriptionLocked shapes a stored subscription as Stripe answers it:
// expandable fields as ids unless expanded, an expanded customer and
// latest_invoice from the double's own, a pause whose resumes_at has passed
// over.
func (d *StripeDouble) renderSubscriptionLocked(o storedObject, expand map[string]bool) map[string]any {
	m := o.decode()
	resumeDueCollection(m, d.now().Unix())
	collapse(m, expand, subscriptionExpandable...)
	if id, ok := m["latest_invoice"].(string); ok && expand["latest_invoice"] {
		if inv, ok := d.billing.invoices[id]; ok {
			m["latest_invoice"] = inv.decode()
		}
	}
	if items, ok := m["items"].(map[string]any); ok {
		if s, _ := items["object"].(string); s == "" {
			items["object"] = "list"
		}
		data, _ := items["data"].([]any)
		for _, it := range data {
			if item, ok := it.(map[string]any); ok {
				for _, k := range []string{"price", "plan"} {
					if p, ok := item[k].(map[string]any); ok {
						collapse(p, nil, "product")
					}
				}
			}
		}
	}
	if expand["customer"] {
		if cust, ok := d.objects.customers[o.customer]; ok {
			m["customer"] = cust.decode()
		}
	}
	return m
}

// listSubscriptions filters like Stripe: by customer, and by status, where
// no status means every status but canceled, "ended" means canceled and
// incomplete_expired, and "all" means every status.
func (d *StripeDouble) listSubscriptions(c *Call) *Response {
	customer, status := c.Form.Get("customer"), c.Form.Get("status")
	d.mu.Lock()
	defer d.mu.Unlock()
	var objs []storedObject
	for _, o := range d.objects.subs {
		if customer != "" && o.customer != customer {
			continue
		}
		if !statusMatches(status, o.status) {
			continue
		}
		objs = append(objs, o)
	}
	sortNewestFirst(objs)
	expand := expansions(c.Form)
	items := make([]map[string]any, len(objs))
	for i, o := range objs {
		items[i] = d.renderSubscriptionLocked(o, expand)
	}
	return listPage(items, c.Form, "/v1/subscriptions", "subscription")
}

func statusMatches(filter, status string) bool {
	switch filter {
	case "all":
		return true
	case "":
		return status != string(stripe.SubscriptionStatusCanceled)
	case "ended":
		return status == string(stripe.SubscriptionStatusCanceled) ||
			status == string(stripe.SubscriptionStatusIncompleteExpired)
	default:
		return status == filter
	}
}

func (d *StripeDouble) listActiveEntitlements(c *Call) *Response {
	customer := c.Form.Get("customer")
	if customer == "" {
		return ErrorResponse(http.StatusBadRequest, "invalid_request_error", "parameter_missing",
			"Missing required param: customer.", "customer")
	}
	d.mu.Lock()
	// The maps are never changed once stored, only replaced.
	items := append([]map[string]any(nil), d.objects.entitlements[customer]...)
	d.mu.Unlock()
	return listPage(items, c.Form, "/v1/entitlements/active_entitlements", "active entitlement")
}

func (d *StripeDouble) getEvent(c *Call) *Response {
	return d.getStored(c, d.objects.events, "event", "id")
}
