package testrig

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// Checkout and Customer Portal URLs the double hands out. They point
// nowhere: tests assert on them, browsers never follow them.
const (
	checkoutURLPrefix = "https://checkout.stripe.test/c/pay/"
	portalURLPrefix   = "https://billing.stripe.test/p/session/"
	checkoutLifetime  = 24 * time.Hour // Stripe's default expires_at
)

// CheckoutSubscriptionData is what a Checkout Session created through the
// double was asked to copy onto the subscription it would start
// (subscription_data[...]). A real session does not echo it back.
type CheckoutSubscriptionData struct {
	TrialPeriodDays int64
	Metadata        map[string]string
}

func (d *StripeDouble) registerCheckoutRoutes() {
	d.Handle("GET /v1/prices/{id}", d.getPrice)
	d.Handle("POST /v1/checkout/sessions", d.createCheckoutSession)
	d.Handle("POST /v1/billing_portal/sessions", d.createPortalSession)
}

// PutPrice adds or replaces a price (keyed by p.ID). Set Type (one_time or
// recurring; left empty it follows Recurring), Recurring{Interval,
// IntervalCount, UsageType}, UnitAmount and Currency: Checkout, subscription
// updates, upcoming invoices and schedules check and bill with them.
func (d *StripeDouble) PutPrice(p *stripe.Price) {
	d.tb.Helper()
	if p.Type == "" {
		cp := *p
		cp.Type = stripe.PriceTypeOneTime
		if p.Recurring != nil {
			cp.Type = stripe.PriceTypeRecurring
		}
		p = &cp
	}
	raw := d.mustEncode(p.ID, p, "price")
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	d.billing.prices[p.ID] = storedObject{id: p.ID, created: p.Created, seq: d.seq, raw: raw}
}

// CheckoutSession returns a Checkout Session as stored (put or created),
// decoded into stripe-go's type.
func (d *StripeDouble) CheckoutSession(id string) (*stripe.CheckoutSession, bool) {
	return storedAs[stripe.CheckoutSession](d, d.billing.sessions, "checkout session", id)
}

// CheckoutSubscriptionData returns the subscription_data a session created
// through POST /v1/checkout/sessions was given (false for an unknown session
// or one created without subscription_data).
func (d *StripeDouble) CheckoutSubscriptionData(id string) (CheckoutSubscriptionData, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	sd, ok := d.billing.sessionSubData[id]
	return sd, ok
}

func (d *StripeDouble) getPrice(c *Call) *Response {
	return d.getStored(c, d.billing.prices, "price", "price", "product")
}

// priceInfo is what the double reads from a price to validate and bill.
type priceInfo struct {
	id            string
	typ           string // one_time or recurring
	unitAmount    int64
	currency      string
	interval      string // day, week, month, year; "" for one_time
	intervalCount int64
	usageType     string // licensed or metered
}

func (p priceInfo) recurring() bool { return p.typ == string(stripe.PriceTypeRecurring) }
func (p priceInfo) metered() bool {
	return p.usageType == string(stripe.PriceRecurringUsageTypeMetered)
}

// priceFromMap reads a price object's JSON.
func priceFromMap(m map[string]any) priceInfo {
	p := priceInfo{id: objectID(m), currency: str(m["currency"]), unitAmount: num(m["unit_amount"]), typ: str(m["type"])}
	if r, ok := m["recurring"].(map[string]any); ok {
		p.interval, p.intervalCount, p.usageType = str(r["interval"]), num(r["interval_count"]), str(r["usage_type"])
		if p.typ == "" {
			p.typ = string(stripe.PriceTypeRecurring)
		}
	}
	if p.intervalCount == 0 {
		p.intervalCount = 1
	}
	return p
}

// priceLocked returns a price put with PutPrice, as info and as the JSON
// object Stripe embeds in subscription items.
func (d *StripeDouble) priceLocked(id string) (priceInfo, map[string]any, bool) {
	o, ok := d.billing.prices[id]
	if !ok {
		return priceInfo{}, nil, false
	}
	m := o.decode()
	return priceFromMap(m), m, true
}

// checkoutLine is one validated line_items[i].
type checkoutLine struct {
	price    priceInfo
	quantity int64
}

// createCheckoutSession implements POST /v1/checkout/sessions with Stripe's
// checks on mode, URLs, customer, line items and mode-specific parameters.
func (d *StripeDouble) createCheckoutSession(c *Call) *Response {
	f := c.Form
	mode := f.Get("mode")
	if resp := checkCheckoutParams(f, mode); resp != nil {
		return resp
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	customer := f.Get("customer")
	if _, ok := d.objects.customers[customer]; customer != "" && !ok {
		return missingRef("customer", customer, "customer")
	}
	lines, resp := d.checkoutLinesLocked(f, mode)
	if resp != nil {
		return resp
	}
	sub, resp := checkoutSubscriptionData(f)
	if resp != nil {
		return resp
	}
	now := d.now().Unix()
	id := d.nextIDLocked("cs_test")
	s := newCheckoutSession(f, id, now, lines)
	raw, err := json.Marshal(s)
	if err != nil {
		return ErrorResponse(http.StatusInternalServerError, "api_error", "", "testrig: encode session: "+err.Error(), "")
	}
	d.seq++
	d.billing.sessions[id] = storedObject{id: id, customer: customer, status: "open", created: now, seq: d.seq, raw: raw}
	if sub != nil {
		d.billing.sessionSubData[id] = *sub
	}
	return JSONResponse(http.StatusOK, s)
}

// checkCheckoutParams checks what needs no stored object: mode, ui_mode and
// its URLs, and parameters only some modes take.
func checkCheckoutParams(f url.Values, mode string) *Response {
	if mode == "" {
		return missingParam("mode")
	}
	if resp := checkEnum(f, "mode", "payment", "setup", "subscription"); resp != nil {
		return resp
	}
	if resp := checkEnum(f, "ui_mode", "embedded", "hosted"); resp != nil {
		return resp
	}
	if f.Get("ui_mode") == "embedded" {
		if f.Get("success_url") != "" {
			return badRequest("You cannot specify `success_url` when `ui_mode` is `embedded`.", "success_url")
		}
		if f.Get("return_url") == "" && f.Get("redirect_on_completion") != "never" {
			return missingParam("return_url")
		}
	} else if f.Get("success_url") == "" {
		return missingParam("success_url")
	}
	for _, k := range []string{"success_url", "cancel_url", "return_url"} {
		if resp := checkURL(f, k); resp != nil {
			return resp
		}
	}
	if f.Get("customer") != "" && f.Get("customer_email") != "" {
		return badRequest("You may only specify one of these parameters: customer, customer_email.", "customer")
	}
	if resp := checkEnum(f, "customer_creation", "always", "if_required"); resp != nil {
		return resp
	}
	if mode == "subscription" && f.Get("customer_creation") != "" {
		return badRequest("`customer_creation` can only be used in `payment` and `setup` mode.", "customer_creation")
	}
	for _, only := range [...]struct{ param, mode string }{
		{"subscription_data", "subscription"},
		{"payment_intent_data", "payment"},
		{"setup_intent_data", "setup"},
	} {
		if hasParam(f, only.param) && mode != only.mode {
			return badRequest(fmt.Sprintf("You can not pass `%s` in `%s` mode.", only.param, mode), only.param)
		}
	}
	return nil
}

// checkoutLinesLocked validates line_items against the double's prices and
// the mode, with Stripe's messages.
func (d *StripeDouble) checkoutLinesLocked(f url.Values, mode string) ([]checkoutLine, *Response) {
	groups := indexedForm(f, "line_items")
	if len(groups) == 0 && mode != "setup" {
		return nil, missingParam("line_items")
	}
	var lines []checkoutLine
	recurring := false
	for _, g := range groups {
		param := fmt.Sprintf("line_items[%d]", g.index)
		p, resp := d.linePriceLocked(g.form, param)
		if resp != nil {
			return nil, resp
		}
		qty, resp := checkoutQuantity(g.form, p, param)
		if resp != nil {
			return nil, resp
		}
		if mode == "payment" && p.recurring() {
			return nil, badRequest("You specified `payment` mode but passed a recurring price. Either switch to `subscription` mode or use only one-time prices.", param)
		}
		recurring = recurring || p.recurring()
		lines = append(lines, checkoutLine{price: p, quantity: qty})
	}
	if mode == "subscription" && !recurring {
		return nil, badRequest("You must provide at least one recurring price in `subscription` mode when using prices.", "line_items")
	}
	return lines, nil
}

// linePriceLocked is a line item's price: a price put with PutPrice, or
// an inline price_data.
func (d *StripeDouble) linePriceLocked(g url.Values, param string) (priceInfo, *Response) {
	if id := g.Get("price"); id != "" {
		p, _, ok := d.priceLocked(id)
		if !ok {
			return p, missingRef("price", id, param+"[price]")
		}
		return p, nil
	}
	if !hasParam(g, "price_data") {
		return priceInfo{}, missingParam(param + "[price]")
	}
	if g.Get("price_data[currency]") == "" {
		return priceInfo{}, missingParam(param + "[price_data][currency]")
	}
	amount, err := strconv.ParseInt(g.Get("price_data[unit_amount]"), 10, 64)
	if err != nil {
		return priceInfo{}, invalidInteger(param+"[price_data][unit_amount]", g.Get("price_data[unit_amount]"))
	}
	p := priceInfo{typ: string(stripe.PriceTypeOneTime), unitAmount: amount, currency: g.Get("price_data[currency]"), intervalCount: 1}
	if p.interval = g.Get("price_data[recurring][interval]"); p.interval != "" {
		p.typ, p.usageType = string(stripe.PriceTypeRecurring), "licensed"
	}
	return p, nil
}

// checkoutQuantity applies Stripe's quantity rules to one line item:
// required, at least 1, and absent for metered prices.
func checkoutQuantity(g url.Values, p priceInfo, param string) (int64, *Response) {
	s := g.Get("quantity")
	if p.metered() {
		if s != "" {
			return 0, badRequest(fmt.Sprintf("Quantity should not be specified where usage_type is `metered`. Remove quantity from `%s`", param), param)
		}
		return 0, nil
	}
	if s == "" {
		return 0, badRequest(fmt.Sprintf("Quantity is required. Add `quantity` to `%s`", param), param)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, invalidInteger(param+"[quantity]", s)
	}
	if n < 1 {
		return 0, ErrorResponse(http.StatusBadRequest, "invalid_request_error", "parameter_invalid_integer",
			"This value must be greater than or equal to 1.", param+"[quantity]")
	}
	return n, nil
}

// checkoutSubscriptionData reads subscription_data[trial_period_days] and
// subscription_data[metadata][...]; nil when neither was sent.
func checkoutSubscriptionData(f url.Values) (*CheckoutSubscriptionData, *Response) {
	if !hasParam(f, "subscription_data") {
		return nil, nil
	}
	sd := &CheckoutSubscriptionData{Metadata: formMap(f, "subscription_data[metadata]")}
	if s := f.Get("subscription_data[trial_period_days]"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, invalidInteger("subscription_data[trial_period_days]", s)
		}
		if n < 1 {
			return nil, ErrorResponse(http.StatusBadRequest, "invalid_request_error", "parameter_invalid_integer",
				"This value must be greater than or equal to 1.", "subscription_data[trial_period_days]")
		}
		sd.TrialPeriodDays = n
	}
	return sd, nil
}

// newCheckoutSession is the session object Stripe answers on creation.
func newCheckoutSession(f url.Values, id string, now int64, lines []checkoutLine) map[string]any {
	var total int64
	currency := f.Get("currency")
	for i, l := range lines {
		total += l.price.unitAmount * l.quantity
		if i == 0 {
			currency = l.price.currency
		}
	}
	uiMode := f.Get("ui_mode")
	if uiMode == "" {
		uiMode = "hosted"
	}
	paymentStatus := "unpaid"
	if f.Get("mode") == "setup" {
		paymentStatus = "no_payment_required"
	}
	s := map[string]any{
		"id": id, "object": "checkout.session", "livemode": false, "created": now,
		"expires_at": now + int64(checkoutLifetime/time.Second), "status": "open", "payment_status": paymentStatus,
		"mode": f.Get("mode"), "ui_mode": uiMode, "url": checkoutURLPrefix + id,
		"customer": nullable(f.Get("customer")), "customer_email": nullable(f.Get("customer_email")),
		"client_reference_id": nullable(f.Get("client_reference_id")), "metadata": formMap(f, "metadata"),
		"success_url": nullable(f.Get("success_url")), "cancel_url": nullable(f.Get("cancel_url")),
		"return_url": nullable(f.Get("return_url")), "currency": nullable(currency),
		"amount_subtotal": total, "amount_total": total, "subscription": nil, "payment_intent": nil, "invoice": nil,
	}
	if uiMode == "embedded" {
		s["url"] = nil
		s["client_secret"] = id + "_secret_testrig"
	}
	return s
}

// createPortalSession implements POST /v1/billing_portal/sessions: customer
// is required and must exist.
func (d *StripeDouble) createPortalSession(c *Call) *Response {
	customer := c.Form.Get("customer")
	if customer == "" {
		return missingParam("customer")
	}
	if resp := checkURL(c.Form, "return_url"); resp != nil {
		return resp
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.objects.customers[customer]; !ok {
		return missingRef("customer", customer, "customer")
	}
	id := d.nextIDLocked("bps")
	configuration := c.Form.Get("configuration")
	if configuration == "" {
		configuration = "bpc_testrig_default"
	}
	return JSONResponse(http.StatusOK, map[string]any{
		"id": id, "object": "billing_portal.session", "livemode": false, "created": d.now().Unix(),
		"customer": customer, "return_url": nullable(c.Form.Get("return_url")), "url": portalURLPrefix + id,
		"configuration": configuration, "locale": nullable(c.Form.Get("locale")), "on_behalf_of": nil, "flow": nil,
	})
}

// formGroup is one index of an array parameter: items[2][price] is index 2
// with form {"price": ...}.
type formGroup struct {
	index int
	form  url.Values // keys re-rooted below prefix[index]: price, metadata[k], items[0][price]
}

// indexedForm splits the prefix[N]... parameters (as stripe-go sends
// arrays) into one group per N, in index order.
func indexedForm(f url.Values, prefix string) []formGroup {
	byIndex := make(map[int]url.Values)
	for k, vs := range f {
		rest, ok := strings.CutPrefix(k, prefix+"[")
		if !ok {
			continue
		}
		idx, rest, ok := strings.Cut(rest, "]")
		n, err := strconv.Atoi(idx)
		if !ok || err != nil || n < 0 {
			continue
		}
		inner, ok := strings.CutPrefix(rest, "[")
		if !ok {
			continue
		}
		if byIndex[n] == nil {
			byIndex[n] = make(url.Values)
		}
		byIndex[n][strings.Replace(inner, "]", "", 1)] = vs
	}
	groups := make([]formGroup, 0, len(byIndex))
	for n, g := range byIndex {
		groups = append(groups, formGroup{index: n, form: g})
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i].index < groups[j].index })
	return groups
}

// formMap returns the name[key]=value parameters as a map (empty, not nil,
// when there are none, as Stripe answers metadata).
func formMap(f url.Values, name string) map[string]string {
	out := make(map[string]string)
	for k, vs := range f {
		if inner, ok := strings.CutPrefix(k, name+"["); ok && strings.HasSuffix(inner, "]") && len(vs) > 0 {
			out[strings.TrimSuffix(inner, "]")] = vs[0]
		}
	}
	return out
}

// hasParam reports whether name or any name[...] was sent.
func hasParam(f url.Values, name string) bool {
	for k := range f {
		if k == name || strings.HasPrefix(k, name+"[") {
			return true
		}
	}
	return false
}

// checkEnum answers Stripe's error when f[param] is set but not one of
// allowed.
func checkEnum(f url.Values, param string, allowed ...string) *Response {
	return checkValue(f.Get(param), param, allowed...)
}

// checkValue answers Stripe's error when v, sent as param, is set but not
// one of allowed.
func checkValue(v, param string, allowed ...string) *Response {
	if v == "" {
		return nil
	}
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	list := strings.Join(allowed[:len(allowed)-1], ", ") + ", or " + allowed[len(allowed)-1]
	return badRequest(fmt.Sprintf("Invalid %s: must be one of %s", param, list), param)
}

// checkURL answers Stripe's error when f[param] is set but not an absolute
// http(s) URL.
func checkURL(f url.Values, param string) *Response {
	v := f.Get(param)
	if v == "" {
		return nil
	}
	if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return badRequest("Not a valid URL", param)
	}
	return nil
}

// badRequest is a plain 400 invalid_request_error about param.
func badRequest(message, param string) *Response {
	return ErrorResponse(http.StatusBadRequest, "invalid_request_error", "", message, param)
}

// missingRef is Stripe's answer when a parameter names an object that does
// not exist: 400 resource_missing (a missing object in the path is a 404,
// see notFound).
func missingRef(noun, id, param string) *Response {
	return ErrorResponse(http.StatusBadRequest, "invalid_request_error", "resource_missing",
		fmt.Sprintf("No such %s: '%s'", noun, id), param)
}

func invalidInteger(param, v string) *Response {
	return ErrorResponse(http.StatusBadRequest, "invalid_request_error", "parameter_invalid_integer", "Invalid integer: "+v, param)
}

// nullable is s, or JSON null when empty.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// str and num read decoded JSON values; anything else reads as zero.
func str(v any) string {
	s, _ := v.(string)
	return s
}

func num(v any) int64 {
	f, _ := v.(float64)
	return int64(f)
}
