package testrig

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// lineSummary lists an invoice's lines as "amount:proration:price".
func lineSummary(in *stripe.Invoice) string {
	var out []string
	for _, l := range in.Lines.Data {
		price := "<nil>"
		if l.Price != nil {
			price = l.Price.ID
		}
		out = append(out, fmt.Sprintf("%d:%v:%s", l.Amount, l.Proration, price))
	}
	return strings.Join(out, " ")
}

func TestDoubleUpcomingInvoice(t *testing.T) {
	d, sc := newBillingDouble(t)
	d.PutSubscription(fxSubscription("sub_P", "cus_B", "price_pro"))
	p := fxNow.Unix() // 16 of 31 days left
	change := func(sub, item, price string, qty int64) *stripe.InvoiceUpcomingParams {
		params := &stripe.InvoiceUpcomingParams{Subscription: stripe.String(sub), SubscriptionProrationDate: stripe.Int64(p)}
		it := &stripe.SubscriptionItemsParams{ID: stripe.String(item), Price: stripe.String(price)}
		if qty > 0 {
			it.Quantity = stripe.Int64(qty)
		}
		params.SubscriptionItems = []*stripe.SubscriptionItemsParams{it}
		return params
	}
	cases := []struct {
		name      string
		params    *stripe.InvoiceUpcomingParams
		wantLines string
		wantTotal int64
		wantDue   int64
	}{
		// 1000 × 16/31 = 516.13, 3100 × 16/31 = 1600.
		{"upgrade", change("sub_A", "si_A", "price_pro", 0), "-516:true:price_basic 1600:true:price_pro 3100:false:price_pro", 4184, 4184},
		{"downgrade owes nothing", change("sub_P", "si_P", "price_basic", 0), "-1600:true:price_pro 516:true:price_basic 1000:false:price_basic", -84, 0},
		{"more seats", change("sub_A", "si_A", "price_basic", 3), "-516:true:price_basic 1548:true:price_basic 3000:false:price_basic", 4032, 4032},
		{"no proration", func() *stripe.InvoiceUpcomingParams {
			params := change("sub_A", "si_A", "price_pro", 0)
			params.SubscriptionProrationBehavior = stripe.String("none")
			return params
		}(), "3100:false:price_pro", 3100, 3100},
		{"no change", &stripe.InvoiceUpcomingParams{Customer: stripe.String("cus_A"), Subscription: stripe.String("sub_A")}, "1000:false:price_basic", 1000, 1000},
		{"customer only", &stripe.InvoiceUpcomingParams{Customer: stripe.String("cus_B")}, "3100:false:price_pro", 3100, 3100},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in, err := sc.Invoices.Upcoming(tc.params)
			if err != nil {
				t.Fatalf("Invoices.Upcoming: %v", err)
			}
			if got := lineSummary(in); got != tc.wantLines {
				t.Errorf("lines = %s; want %s", got, tc.wantLines)
			}
			if in.Total != tc.wantTotal || in.Subtotal != tc.wantTotal || in.AmountDue != tc.wantDue || in.Currency != "usd" {
				t.Errorf("total %d, subtotal %d, amount_due %d %s; want %d, %d, %d usd", in.Total, in.Subtotal, in.AmountDue, in.Currency, tc.wantTotal, tc.wantTotal, tc.wantDue)
			}
			if in.ID != "" || in.Object != "invoice" || in.Customer == nil || in.Subscription == nil {
				t.Errorf("invoice = id %q object %q customer %v subscription %v; want no id, an invoice with customer and subscription", in.ID, in.Object, in.Customer, in.Subscription)
			}
		})
	}
}

func TestDoubleUpcomingInvoiceLines(t *testing.T) {
	d, sc := newBillingDouble(t)
	p := fxNow.Unix()
	in, err := sc.Invoices.Upcoming(&stripe.InvoiceUpcomingParams{Subscription: stripe.String("sub_A"), SubscriptionProrationDate: stripe.Int64(p),
		SubscriptionItems: []*stripe.SubscriptionItemsParams{{ID: stripe.String("si_A"), Price: stripe.String("price_pro")}}})
	if err != nil {
		t.Fatalf("Invoices.Upcoming: %v", err)
	}
	first := in.Lines.Data[0]
	if in.SubscriptionProrationDate != p || first.Period == nil || first.Period.Start != p || first.Period.End != fxPeriodEnd ||
		first.Description != "Unused time on price_basic after 16 Jan 2024" || first.SubscriptionItem == nil || first.SubscriptionItem.ID != "si_A" {
		t.Errorf("proration line = %+v (proration date %d); want period %d–%d, \"Unused time on price_basic after 16 Jan 2024\", item si_A",
			first, in.SubscriptionProrationDate, p, fxPeriodEnd)
	}
	renewal := in.Lines.Data[2]
	if wantEnd := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC).Unix(); renewal.Period.Start != fxPeriodEnd || renewal.Period.End != wantEnd {
		t.Errorf("renewal period = %d–%d; want %d–%d", renewal.Period.Start, renewal.Period.End, fxPeriodEnd, wantEnd)
	}
	if s, _ := d.Subscription("sub_A"); itemPrices(s) != "si_A=price_basic×1" {
		t.Errorf("sub_A after previews = %s; want unchanged", itemPrices(s))
	}
}

func TestDoubleUpcomingInvoiceErrors(t *testing.T) {
	d, sc := newBillingDouble(t)
	gone := fxSubscription("sub_gone", "cus_B", "price_basic")
	gone.Status = stripe.SubscriptionStatusCanceled
	d.PutSubscription(gone)
	d.PutCustomer(&stripe.Customer{ID: "cus_none"})
	const badReq = http.StatusBadRequest
	cases := []struct {
		name   string
		params *stripe.InvoiceUpcomingParams
		status int
		code   stripe.ErrorCode
		param  string
		msg    string
	}{
		{"nothing named", &stripe.InvoiceUpcomingParams{}, badReq, "parameter_missing", "customer", "Missing required param: customer."},
		{"unknown customer", &stripe.InvoiceUpcomingParams{Customer: stripe.String("cus_missing")}, badReq, "resource_missing", "customer", "No such customer: 'cus_missing'"},
		{"unknown subscription", &stripe.InvoiceUpcomingParams{Subscription: stripe.String("sub_missing")}, badReq, "resource_missing", "subscription", "No such subscription: 'sub_missing'"},
		{"someone else's subscription", &stripe.InvoiceUpcomingParams{Customer: stripe.String("cus_B"), Subscription: stripe.String("sub_A")},
			badReq, "", "subscription", "does not belong to the customer"},
		{"unknown item", &stripe.InvoiceUpcomingParams{Subscription: stripe.String("sub_A"), SubscriptionItems: []*stripe.SubscriptionItemsParams{
			{ID: stripe.String("si_x"), Price: stripe.String("price_pro")}}}, badReq, "resource_missing", "subscription_items[0][id]", "No such subscription item"},
		{"unknown price", &stripe.InvoiceUpcomingParams{Subscription: stripe.String("sub_A"), SubscriptionItems: []*stripe.SubscriptionItemsParams{
			{ID: stripe.String("si_A"), Price: stripe.String("price_x")}}}, badReq, "resource_missing", "subscription_items[0][price]", "No such price: 'price_x'"},
		{"proration date after the period", &stripe.InvoiceUpcomingParams{Subscription: stripe.String("sub_A"),
			SubscriptionProrationDate: stripe.Int64(fxPeriodEnd + 1)}, badReq, "", "subscription_proration_date", "within the current subscription period"},
		{"bad proration behavior", &stripe.InvoiceUpcomingParams{Subscription: stripe.String("sub_A"),
			SubscriptionProrationBehavior: stripe.String("always")}, badReq, "", "subscription_proration_behavior", "must be one of"},
		{"canceled", &stripe.InvoiceUpcomingParams{Subscription: stripe.String("sub_gone")}, http.StatusNotFound, "invoice_upcoming_none", "", "No upcoming invoices for customer: cus_B"},
		{"customer without subscriptions", &stripe.InvoiceUpcomingParams{Customer: stripe.String("cus_none")}, http.StatusNotFound, "invoice_upcoming_none", "", "No upcoming invoices for customer: cus_none"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sc.Invoices.Upcoming(tc.params)
			wantStripeErr(t, err, tc.status, tc.code, tc.param, tc.msg)
		})
	}
}
