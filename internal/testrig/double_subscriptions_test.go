package testrig

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
)

// The billing fixture's clock and period: January 2024 (31 days) with the
// clock on the 16th, so 16/31 of the period is left to prorate.
var (
	fxPeriodStart = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	fxPeriodEnd   = time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC).Unix()
	fxNow         = time.Date(2024, 1, 16, 0, 0, 0, 0, time.UTC)
)

// newBillingDouble is a double with the fixture's clock, prices
// (price_basic 1000/month, price_pro 3100/month, price_api metered,
// price_setup one-time 500), customers cus_A and cus_B, and sub_A: cus_A's
// active price_basic subscription with item si_A.
func newBillingDouble(t *testing.T) (*StripeDouble, *client.API) {
	t.Helper()
	d := NewStripeDouble(t)
	d.SetClock(func() time.Time { return fxNow })
	monthly := func(usage stripe.PriceRecurringUsageType) *stripe.PriceRecurring {
		return &stripe.PriceRecurring{Interval: stripe.PriceRecurringIntervalMonth, IntervalCount: 1, UsageType: usage}
	}
	for _, p := range []*stripe.Price{
		{ID: "price_basic", Type: stripe.PriceTypeRecurring, Recurring: monthly("licensed"), UnitAmount: 1000,
			Currency: "usd", LookupKey: "basic", Product: &stripe.Product{ID: "prod_basic", Name: "Basic"}},
		{ID: "price_pro", Type: stripe.PriceTypeRecurring, Recurring: monthly("licensed"), UnitAmount: 3100, Currency: "usd"},
		{ID: "price_api", Type: stripe.PriceTypeRecurring, Recurring: monthly("metered"), UnitAmount: 2, Currency: "usd"},
		{ID: "price_setup", Type: stripe.PriceTypeOneTime, UnitAmount: 500, Currency: "usd"},
	} {
		d.PutPrice(p)
	}
	d.PutCustomer(&stripe.Customer{ID: "cus_A"})
	d.PutCustomer(&stripe.Customer{ID: "cus_B"})
	d.PutSubscription(fxSubscription("sub_A", "cus_A", "price_basic"))
	return d, StripeClient(t, d.URL())
}

// fxSubscription is an active subscription in the fixture's period with
// one item, si_<id without "sub_">, of price.
func fxSubscription(id, customer, price string) *stripe.Subscription {
	return &stripe.Subscription{ID: id, Customer: &stripe.Customer{ID: customer}, Status: stripe.SubscriptionStatusActive,
		Currency: "usd", Created: fxPeriodStart, CurrentPeriodStart: fxPeriodStart, CurrentPeriodEnd: fxPeriodEnd,
		Items: &stripe.SubscriptionItemList{Data: []*stripe.SubscriptionItem{
			{ID: "si_" + strings.TrimPrefix(id, "sub_"), Price: &stripe.Price{ID: price}, Quantity: 1},
		}}}
}

// wantStripeErr checks that err is Stripe's error with this status, code
// and param, and a message containing msg.
func wantStripeErr(t *testing.T, err error, status int, code stripe.ErrorCode, param, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("error = nil; want %d %s %q", status, code, msg)
	}
	se := stripeErr(t, err)
	if se.HTTPStatusCode != status || se.Code != code || se.Param != param || !strings.Contains(se.Msg, msg) {
		t.Errorf("error = %d code %q param %q %q; want %d code %q param %q containing %q",
			se.HTTPStatusCode, se.Code, se.Param, se.Msg, status, code, param, msg)
	}
}

// itemPrices lists a subscription's items as "id=price×quantity".
func itemPrices(s *stripe.Subscription) string {
	var out []string
	for _, it := range s.Items.Data {
		price := "<nil>"
		if it.Price != nil {
			price = it.Price.ID
		}
		out = append(out, it.ID+"="+price+"×"+itoa(it.Quantity))
	}
	return strings.Join(out, ",")
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestDoubleSubscriptionUpdatePrice(t *testing.T) {
	d, sc := newBillingDouble(t)
	proration := fxNow.Add(-time.Minute).Unix()

	up := &stripe.SubscriptionParams{
		Items:             []*stripe.SubscriptionItemsParams{{ID: stripe.String("si_A"), Price: stripe.String("price_pro")}},
		ProrationBehavior: stripe.String("create_prorations"),
		ProrationDate:     stripe.Int64(proration),
		PaymentBehavior:   stripe.String("pending_if_incomplete"),
	}
	got, err := sc.Subscriptions.Update("sub_A", up)
	if err != nil {
		t.Fatalf("Update(items → price_pro): %v", err)
	}
	if s := itemPrices(got); s != "si_A=price_pro×1" {
		t.Errorf("items after upgrade = %s; want si_A=price_pro×1 (same item, new price)", s)
	}
	if p := got.Items.Data[0].Price; p.UnitAmount != 3100 || p.Recurring == nil || p.Recurring.Interval != "month" {
		t.Errorf("item price = %+v; want the stored price_pro (3100 a month)", p)
	}
	last := d.Requests()[len(d.Requests())-1]
	if last.Form.Get("proration_date") != itoa(proration) || last.Form.Get("items[0][id]") != "si_A" || last.IdempotencyKey == "" {
		t.Errorf("recorded update = %v (key %q); want proration_date, items[0][id] and an Idempotency-Key", last.Form, last.IdempotencyKey)
	}
}

// Each case updates sub_A as left by the cases before it.
func TestDoubleSubscriptionUpdateFields(t *testing.T) {
	d, sc := newBillingDouble(t)
	cases := []struct {
		name   string
		params *stripe.SubscriptionParams
		check  func(s *stripe.Subscription) string // "" when fine
	}{
		{"cancel at period end", &stripe.SubscriptionParams{CancelAtPeriodEnd: stripe.Bool(true)}, func(s *stripe.Subscription) string {
			if !s.CancelAtPeriodEnd || s.CancelAt != fxPeriodEnd || s.CanceledAt != fxNow.Unix() {
				return "want cancel_at_period_end, cancel_at = period end, canceled_at = now"
			}
			return ""
		}},
		{"keep", &stripe.SubscriptionParams{CancelAtPeriodEnd: stripe.Bool(false)}, func(s *stripe.Subscription) string {
			if s.CancelAtPeriodEnd || s.CancelAt != 0 || s.CanceledAt != 0 {
				return "want the cancelation undone"
			}
			return ""
		}},
		{"metadata", &stripe.SubscriptionParams{Metadata: map[string]string{"plan": "pro", "user_id": "u1"}}, func(s *stripe.Subscription) string {
			if s.Metadata["plan"] != "pro" || s.Metadata["user_id"] != "u1" {
				return "want both metadata keys"
			}
			return ""
		}},
		{"metadata unset", &stripe.SubscriptionParams{Metadata: map[string]string{"plan": ""}}, func(s *stripe.Subscription) string {
			if _, ok := s.Metadata["plan"]; ok || s.Metadata["user_id"] != "u1" {
				return "want plan removed, user_id kept"
			}
			return ""
		}},
		{"add metered item", &stripe.SubscriptionParams{Items: []*stripe.SubscriptionItemsParams{{Price: stripe.String("price_api")}},
			ProrationBehavior: stripe.String("none")}, func(s *stripe.Subscription) string {
			if len(s.Items.Data) != 2 || s.Items.Data[1].Price.ID != "price_api" || s.Items.Data[1].Quantity != 0 || s.Items.Data[1].ID == "" {
				return "want a second item of price_api with an id and no quantity"
			}
			return ""
		}},
		{"quantity", &stripe.SubscriptionParams{Items: []*stripe.SubscriptionItemsParams{{ID: stripe.String("si_A"), Quantity: stripe.Int64(3)}}},
			func(s *stripe.Subscription) string {
				if s.Items.Data[0].Quantity != 3 || s.Items.Data[0].Price.ID != "price_basic" {
					return "want si_A at price_basic × 3"
				}
				return ""
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := sc.Subscriptions.Update("sub_A", tc.params)
			if err != nil {
				t.Fatalf("Update: %v", err)
			}
			if msg := tc.check(s); msg != "" {
				t.Errorf("answer: items %s, %+v; %s", itemPrices(s), s, msg)
			}
			stored, _ := d.Subscription("sub_A")
			if msg := tc.check(stored); msg != "" {
				t.Errorf("stored: items %s; %s", itemPrices(stored), msg)
			}
		})
	}
}

func TestDoubleSubscriptionUpdateErrors(t *testing.T) {
	d, sc := newBillingDouble(t)
	d.PutSubscription(&stripe.Subscription{ID: "sub_gone", Customer: &stripe.Customer{ID: "cus_A"},
		Status: stripe.SubscriptionStatusCanceled, Items: fxSubscription("sub_gone", "cus_A", "price_basic").Items})
	scheduled := fxSubscription("sub_S", "cus_B", "price_pro")
	scheduled.Schedule = &stripe.SubscriptionSchedule{ID: "sub_sched_S"}
	d.PutSubscription(scheduled)
	item := func(id, price string) []*stripe.SubscriptionItemsParams {
		return []*stripe.SubscriptionItemsParams{{ID: stripe.String(id), Price: stripe.String(price)}}
	}
	const badReq = http.StatusBadRequest
	cases := []struct {
		name   string
		sub    string
		params *stripe.SubscriptionParams
		status int
		code   stripe.ErrorCode
		param  string
		msg    string
	}{
		{"unknown subscription", "sub_missing", &stripe.SubscriptionParams{}, http.StatusNotFound, "resource_missing", "id", "No such subscription: 'sub_missing'"},
		{"proration behavior", "sub_A", &stripe.SubscriptionParams{ProrationBehavior: stripe.String("prorate")}, badReq, "", "proration_behavior", "must be one of"},
		{"payment behavior", "sub_A", &stripe.SubscriptionParams{PaymentBehavior: stripe.String("charge")}, badReq, "", "payment_behavior", "must be one of"},
		{"proration date in the future", "sub_A", &stripe.SubscriptionParams{Items: item("si_A", "price_pro"),
			ProrationDate: stripe.Int64(fxNow.Add(time.Hour).Unix())}, badReq, "", "proration_date", "cannot be in the future"},
		{"proration date before the period", "sub_A", &stripe.SubscriptionParams{Items: item("si_A", "price_pro"),
			ProrationDate: stripe.Int64(fxPeriodStart - 1)}, badReq, "", "proration_date", "within the current subscription period"},
		{"unknown item", "sub_A", &stripe.SubscriptionParams{Items: item("si_other", "price_pro")}, badReq, "resource_missing", "items[0][id]", "No such subscription item: 'si_other'"},
		{"unknown price", "sub_A", &stripe.SubscriptionParams{Items: item("si_A", "price_nope")}, badReq, "resource_missing", "items[0][price]", "No such price: 'price_nope'"},
		{"one-time price", "sub_A", &stripe.SubscriptionParams{Items: item("si_A", "price_setup")}, badReq, "", "items[0][price]", "only accepts prices with `type=recurring`"},
		{"quantity on metered", "sub_A", &stripe.SubscriptionParams{Items: []*stripe.SubscriptionItemsParams{
			{ID: stripe.String("si_A"), Price: stripe.String("price_api"), Quantity: stripe.Int64(2)}}}, badReq, "", "items[0][quantity]", "metered"},
		{"delete every item", "sub_A", &stripe.SubscriptionParams{Items: []*stripe.SubscriptionItemsParams{
			{ID: stripe.String("si_A"), Deleted: stripe.Bool(true)}}}, badReq, "", "items", "at least one item"},
		{"pending update with metadata", "sub_A", &stripe.SubscriptionParams{PaymentBehavior: stripe.String("pending_if_incomplete"),
			Items: item("si_A", "price_pro"), Metadata: map[string]string{"plan": "pro"}}, badReq, "", "metadata", "pending_if_incomplete"},
		{"pending update with cancel", "sub_A", &stripe.SubscriptionParams{PaymentBehavior: stripe.String("pending_if_incomplete"),
			CancelAtPeriodEnd: stripe.Bool(true)}, badReq, "", "cancel_at_period_end", "pending_if_incomplete"},
		{"canceled", "sub_gone", &stripe.SubscriptionParams{Items: item("si_gone", "price_pro")}, badReq, "", "items",
			"A canceled subscription can only update its cancellation_details and metadata."},
		{"scheduled cancel", "sub_S", &stripe.SubscriptionParams{CancelAtPeriodEnd: stripe.Bool(true)}, badReq, "", "cancel_at_period_end",
			"managed by the subscription schedule `sub_sched_S`, and updating any cancelation behavior directly is not allowed"},
		{"scheduled items", "sub_S", &stripe.SubscriptionParams{Items: item("si_S", "price_basic")}, badReq, "", "items",
			"managed by the subscription schedule `sub_sched_S`"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sc.Subscriptions.Update(tc.sub, tc.params)
			wantStripeErr(t, err, tc.status, tc.code, tc.param, tc.msg)
		})
	}
	if s, _ := d.Subscription("sub_A"); itemPrices(s) != "si_A=price_basic×1" || len(s.Metadata) != 0 {
		t.Errorf("sub_A after refused updates = %s %v; want it unchanged", itemPrices(s), s.Metadata)
	}
	if _, err := sc.Subscriptions.Update("sub_gone", &stripe.SubscriptionParams{Metadata: map[string]string{"note": "x"}}); err != nil {
		t.Errorf("metadata on a canceled subscription: %v; want it accepted", err)
	}
}

func TestDoubleSubscriptionResume(t *testing.T) {
	d, sc := newBillingDouble(t)
	paused := fxSubscription("sub_P", "cus_B", "price_basic")
	paused.Status = stripe.SubscriptionStatusPaused
	d.PutSubscription(paused)

	got, err := sc.Subscriptions.Resume("sub_P", &stripe.SubscriptionResumeParams{})
	if err != nil {
		t.Fatalf("Resume(paused): %v", err)
	}
	wantEnd := time.Date(2024, 2, 16, 0, 0, 0, 0, time.UTC).Unix()
	if got.Status != stripe.SubscriptionStatusActive || got.CurrentPeriodStart != fxNow.Unix() || got.CurrentPeriodEnd != wantEnd {
		t.Errorf("Resume = status %s, period %d–%d; want active, %d–%d (a new period from now)",
			got.Status, got.CurrentPeriodStart, got.CurrentPeriodEnd, fxNow.Unix(), wantEnd)
	}
	_, err = sc.Subscriptions.Resume("sub_A", &stripe.SubscriptionResumeParams{})
	wantStripeErr(t, err, http.StatusBadRequest, "", "", "Subscription must be paused to resume")
	_, err = sc.Subscriptions.Resume("sub_missing", &stripe.SubscriptionResumeParams{})
	wantStripeErr(t, err, http.StatusNotFound, "resource_missing", "id", "No such subscription")
}
