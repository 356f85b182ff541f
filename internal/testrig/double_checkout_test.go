package testrig

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stripe/stripe-go/v76"
)

func TestDoublePrices(t *testing.T) {
	_, sc := newBillingDouble(t)
	got, err := sc.Prices.Get("price_basic", nil)
	if err != nil {
		t.Fatalf("Prices.Get(price_basic): %v", err)
	}
	if got.Object != "price" || got.Type != stripe.PriceTypeRecurring || got.UnitAmount != 1000 || got.Currency != "usd" ||
		got.LookupKey != "basic" || got.Recurring == nil || got.Recurring.Interval != "month" || got.Recurring.IntervalCount != 1 {
		t.Errorf("Prices.Get(price_basic) = %+v; want a recurring 1000 usd monthly price, lookup key basic", got)
	}
	if got.Product == nil || got.Product.ID != "prod_basic" || got.Product.Name != "" {
		t.Errorf("product = %+v; want the id prod_basic only (not expanded)", got.Product)
	}
	_, err = sc.Prices.Get("price_missing", nil)
	wantStripeErr(t, err, http.StatusNotFound, stripe.ErrorCodeResourceMissing, "price", "No such price: 'price_missing'")
}

// checkoutParams is a valid subscription-mode session for cus_A.
func checkoutParams() *stripe.CheckoutSessionParams {
	return &stripe.CheckoutSessionParams{
		Mode:              stripe.String("subscription"),
		Customer:          stripe.String("cus_A"),
		ClientReferenceID: stripe.String("user_1"),
		SuccessURL:        stripe.String("https://app.example/billing/done?session_id={CHECKOUT_SESSION_ID}"),
		CancelURL:         stripe.String("https://app.example/billing"),
		LineItems: []*stripe.CheckoutSessionLineItemParams{
			{Price: stripe.String("price_basic"), Quantity: stripe.Int64(1)},
			{Price: stripe.String("price_api")},
		},
		Metadata: map[string]string{"user_id": "user_1"},
		SubscriptionData: &stripe.CheckoutSessionSubscriptionDataParams{
			TrialPeriodDays: stripe.Int64(14),
			Metadata:        map[string]string{"user_id": "user_1"},
		},
	}
}

func TestDoubleCheckoutSessionCreate(t *testing.T) {
	d, sc := newBillingDouble(t)
	s, err := sc.CheckoutSessions.New(checkoutParams())
	if err != nil {
		t.Fatalf("CheckoutSessions.New: %v", err)
	}
	if !strings.HasPrefix(s.ID, "cs_test_") || s.Object != "checkout.session" || s.URL != "https://checkout.stripe.test/c/pay/"+s.ID ||
		s.Status != stripe.CheckoutSessionStatusOpen || s.Mode != stripe.CheckoutSessionModeSubscription || s.Created != fxNow.Unix() {
		t.Errorf("session = {ID:%q Object:%q URL:%q Status:%q Mode:%q Created:%d}; want cs_test_..., checkout.session, its URL, open, subscription, %d",
			s.ID, s.Object, s.URL, s.Status, s.Mode, s.Created, fxNow.Unix())
	}
	if s.Customer == nil || s.Customer.ID != "cus_A" || s.ClientReferenceID != "user_1" || s.Metadata["user_id"] != "user_1" ||
		!strings.HasPrefix(s.SuccessURL, "https://app.example/billing/done") || s.CancelURL != "https://app.example/billing" {
		t.Errorf("session = customer %v, ref %q, metadata %v, urls %q %q; want cus_A, user_1, user_id, the URLs sent",
			s.Customer, s.ClientReferenceID, s.Metadata, s.SuccessURL, s.CancelURL)
	}
	again, err := sc.CheckoutSessions.Get(s.ID, nil)
	if err != nil || again.ID != s.ID || again.URL != s.URL || again.Customer.ID != "cus_A" {
		t.Errorf("CheckoutSessions.Get(%s) = %+v, %v; want the created session", s.ID, again, err)
	}
	if sd, ok := d.CheckoutSubscriptionData(s.ID); !ok || sd.TrialPeriodDays != 14 || sd.Metadata["user_id"] != "user_1" {
		t.Errorf("CheckoutSubscriptionData = %+v, %v; want 14 trial days and user_id", sd, ok)
	}
	if stored, ok := d.CheckoutSession(s.ID); !ok || stored.Mode != "subscription" {
		t.Errorf("CheckoutSession(%s) = %+v, %v; want the stored session", s.ID, stored, ok)
	}

	cases := []struct {
		name   string
		params *stripe.CheckoutSessionParams
	}{
		{"payment mode, one-time price, no customer", &stripe.CheckoutSessionParams{Mode: stripe.String("payment"),
			SuccessURL: stripe.String("https://app.example/ok"), CustomerCreation: stripe.String("always"),
			LineItems: []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String("price_setup"), Quantity: stripe.Int64(2)}}}},
		{"subscription with a setup fee", &stripe.CheckoutSessionParams{Mode: stripe.String("subscription"),
			SuccessURL: stripe.String("https://app.example/ok"), LineItems: []*stripe.CheckoutSessionLineItemParams{
				{Price: stripe.String("price_pro"), Quantity: stripe.Int64(1)}, {Price: stripe.String("price_setup"), Quantity: stripe.Int64(1)}}}},
		{"inline price_data", &stripe.CheckoutSessionParams{Mode: stripe.String("payment"), SuccessURL: stripe.String("https://app.example/ok"),
			LineItems: []*stripe.CheckoutSessionLineItemParams{{Quantity: stripe.Int64(1), PriceData: &stripe.CheckoutSessionLineItemPriceDataParams{
				Currency: stripe.String("usd"), UnitAmount: stripe.Int64(900), ProductData: &stripe.CheckoutSessionLineItemPriceDataProductDataParams{Name: stripe.String("Credits")}}}}}},
		{"embedded", &stripe.CheckoutSessionParams{Mode: stripe.String("subscription"), UIMode: stripe.String("embedded"),
			ReturnURL: stripe.String("https://app.example/return"),
			LineItems: []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String("price_pro"), Quantity: stripe.Int64(1)}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := sc.CheckoutSessions.New(tc.params)
			if err != nil {
				t.Fatalf("CheckoutSessions.New: %v", err)
			}
			if s.Customer != nil || s.Status != "open" || s.Mode != stripe.CheckoutSessionMode(*tc.params.Mode) {
				t.Errorf("session = customer %v, status %q, mode %q; want no customer, open, %s", s.Customer, s.Status, s.Mode, *tc.params.Mode)
			}
			if _, ok := d.CheckoutSubscriptionData(s.ID); ok {
				t.Errorf("CheckoutSubscriptionData(%s) found; want none (no subscription_data sent)", s.ID)
			}
		})
	}
	if n := d.Count(http.MethodPost, "/v1/checkout/sessions"); n != 1+len(cases) {
		t.Errorf("POSTs = %d; want %d", n, 1+len(cases))
	}
}

func TestDoubleCheckoutSessionErrors(t *testing.T) {
	d, sc := newBillingDouble(t)
	const badReq = http.StatusBadRequest
	cases := []struct {
		name   string
		change func(p *stripe.CheckoutSessionParams)
		code   stripe.ErrorCode
		param  string
		msg    string
	}{
		{"no mode", func(p *stripe.CheckoutSessionParams) { p.Mode = nil }, "parameter_missing", "mode", "Missing required param: mode."},
		{"bad mode", func(p *stripe.CheckoutSessionParams) { p.Mode = stripe.String("subscribe") }, "", "mode", "Invalid mode: must be one of payment, setup, or subscription"},
		{"no success_url", func(p *stripe.CheckoutSessionParams) { p.SuccessURL = nil }, "parameter_missing", "success_url", "Missing required param: success_url."},
		{"relative success_url", func(p *stripe.CheckoutSessionParams) { p.SuccessURL = stripe.String("/done") }, "", "success_url", "Not a valid URL"},
		{"embedded with success_url", func(p *stripe.CheckoutSessionParams) { p.UIMode = stripe.String("embedded") }, "", "success_url", "`ui_mode` is `embedded`"},
		{"unknown customer", func(p *stripe.CheckoutSessionParams) { p.Customer = stripe.String("cus_missing") }, "resource_missing", "customer", "No such customer: 'cus_missing'"},
		{"customer and email", func(p *stripe.CheckoutSessionParams) { p.CustomerEmail = stripe.String("a@example.com") }, "", "customer", "only specify one of these parameters: customer, customer_email"},
		{"unknown price", func(p *stripe.CheckoutSessionParams) { p.LineItems[0].Price = stripe.String("price_nope") }, "resource_missing", "line_items[0][price]", "No such price: 'price_nope'"},
		{"no line items", func(p *stripe.CheckoutSessionParams) { p.LineItems = nil }, "parameter_missing", "line_items", "Missing required param: line_items."},
		{"no quantity", func(p *stripe.CheckoutSessionParams) { p.LineItems[0].Quantity = nil }, "", "line_items[0]", "Quantity is required. Add `quantity` to `line_items[0]`"},
		{"zero quantity", func(p *stripe.CheckoutSessionParams) { p.LineItems[0].Quantity = stripe.Int64(0) }, "parameter_invalid_integer", "line_items[0][quantity]", "greater than or equal to 1"},
		{"quantity on metered", func(p *stripe.CheckoutSessionParams) { p.LineItems[1].Quantity = stripe.Int64(1) }, "", "line_items[1]", "Quantity should not be specified where usage_type is `metered`"},
		{"subscription mode, one-time only", func(p *stripe.CheckoutSessionParams) {
			p.LineItems = []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String("price_setup"), Quantity: stripe.Int64(1)}}
		}, "", "line_items", "You must provide at least one recurring price in `subscription` mode"},
		{"payment mode, recurring price", func(p *stripe.CheckoutSessionParams) {
			p.Mode, p.SubscriptionData = stripe.String("payment"), nil
		}, "", "line_items[0]", "You specified `payment` mode but passed a recurring price"},
		{"subscription_data in payment mode", func(p *stripe.CheckoutSessionParams) {
			p.Mode = stripe.String("payment")
			p.LineItems = []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String("price_setup"), Quantity: stripe.Int64(1)}}
		}, "", "subscription_data", "You can not pass `subscription_data` in `payment` mode."},
		{"customer_creation in subscription mode", func(p *stripe.CheckoutSessionParams) {
			p.Customer, p.CustomerCreation = nil, stripe.String("always")
		}, "", "customer_creation", "`customer_creation` can only be used in `payment` and `setup` mode."},
		{"bad trial", func(p *stripe.CheckoutSessionParams) { p.SubscriptionData.TrialPeriodDays = stripe.Int64(0) }, "parameter_invalid_integer", "subscription_data[trial_period_days]", "greater than or equal to 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := checkoutParams()
			tc.change(p)
			_, err := sc.CheckoutSessions.New(p)
			wantStripeErr(t, err, badReq, tc.code, tc.param, tc.msg)
		})
	}
	d.mu.Lock()
	n := len(d.billing.sessions)
	d.mu.Unlock()
	if n != 0 {
		t.Errorf("%d sessions stored; want none after refused calls", n)
	}
}

func TestDoubleBillingPortalSession(t *testing.T) {
	_, sc := newBillingDouble(t)
	got, err := sc.BillingPortalSessions.New(&stripe.BillingPortalSessionParams{
		Customer: stripe.String("cus_A"), ReturnURL: stripe.String("https://app.example/account"),
	})
	if err != nil {
		t.Fatalf("BillingPortalSessions.New: %v", err)
	}
	if !strings.HasPrefix(got.ID, "bps_") || got.Object != "billing_portal.session" || got.Customer != "cus_A" ||
		got.ReturnURL != "https://app.example/account" || got.URL != "https://billing.stripe.test/p/session/"+got.ID || got.Created != fxNow.Unix() {
		t.Errorf("portal session = %+v; want bps_..., billing_portal.session, cus_A, the return URL, its URL, created now", got)
	}

	cases := []struct {
		name   string
		params *stripe.BillingPortalSessionParams
		code   stripe.ErrorCode
		param  string
		msg    string
	}{
		{"no customer", &stripe.BillingPortalSessionParams{}, "parameter_missing", "customer", "Missing required param: customer."},
		{"unknown customer", &stripe.BillingPortalSessionParams{Customer: stripe.String("cus_missing")}, "resource_missing", "customer", "No such customer: 'cus_missing'"},
		{"bad return_url", &stripe.BillingPortalSessionParams{Customer: stripe.String("cus_A"), ReturnURL: stripe.String("account")}, "", "return_url", "Not a valid URL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sc.BillingPortalSessions.New(tc.params)
			wantStripeErr(t, err, http.StatusBadRequest, tc.code, tc.param, tc.msg)
		})
	}
}
