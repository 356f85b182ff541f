package testrig

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stripe/stripe-go/v76"
)

// putEvents stores n events of alternating types, created one second
// apart from base, with ids evt_<i>.
func putEvents(d *StripeDouble, n int, base int64) {
	for i := range n {
		typ := []string{"customer.subscription.updated", "invoice.paid", "charge.refunded"}[i%3]
		d.PutEventJSON([]byte(fmt.Sprintf(`{"id":"evt_%d","object":"event","type":%q,"created":%d,"data":{"object":{"id":"x"}}}`,
			i, typ, base+int64(i))))
	}
}

// GET /v1/events through stripe-go's event.List: newest first, created and
// types filters, pages of limit with starting_after and has_more, as
// Stripe answers.
func TestDoubleListsEvents(t *testing.T) {
	d := NewStripeDouble(t)
	const base = 1_700_000_000
	putEvents(d, 25, base)
	api := StripeClient(t, d.URL())
	list := func(p *stripe.EventListParams) []string {
		t.Helper()
		p.Context = context.Background()
		it := api.Events.List(p)
		var ids []string
		for it.Next() {
			ids = append(ids, it.Event().ID)
		}
		if err := it.Err(); err != nil {
			t.Fatalf("list: %v", err)
		}
		return ids
	}
	for _, c := range []struct {
		name string
		p    *stripe.EventListParams
		want string
	}{
		{"created gte", &stripe.EventListParams{CreatedRange: &stripe.RangeQueryParams{GreaterThanOrEqual: base + 21}},
			"evt_24,evt_23,evt_22,evt_21"},
		{"created range", &stripe.EventListParams{CreatedRange: &stripe.RangeQueryParams{GreaterThan: base + 2, LesserThanOrEqual: base + 4}},
			"evt_4,evt_3"},
		{"created exact", &stripe.EventListParams{Created: stripe.Int64(base + 7)}, "evt_7"},
		{"types", &stripe.EventListParams{Types: stripe.StringSlice([]string{"invoice.paid"}),
			CreatedRange: &stripe.RangeQueryParams{GreaterThanOrEqual: base + 13}}, "evt_22,evt_19,evt_16,evt_13"},
		{"type wildcard", &stripe.EventListParams{Type: stripe.String("customer.*"),
			CreatedRange: &stripe.RangeQueryParams{GreaterThanOrEqual: base + 15}}, "evt_24,evt_21,evt_18,evt_15"},
	} {
		if got := strings.Join(list(c.p), ","); got != c.want {
			t.Errorf("%s: listed %s; want %s", c.name, got, c.want)
		}
	}

	// All 25 in pages of 10: three requests, the next starting after the
	// last id of the one before, and has_more false on the last.
	p := &stripe.EventListParams{}
	p.Limit = stripe.Int64(10)
	if got := list(p); len(got) != 25 || got[0] != "evt_24" || got[24] != "evt_0" {
		t.Errorf("all events = %v; want evt_24 .. evt_0", got)
	}
	var pages []string
	for _, r := range d.Requests() {
		if r.Method == http.MethodGet && r.Path == "/v1/events" && r.Form.Get("limit") == "10" {
			pages = append(pages, r.Form.Get("starting_after"))
		}
	}
	if strings.Join(pages, ",") != ",evt_15,evt_5" {
		t.Errorf("pages started after %q; want \"\", evt_15, evt_5", pages)
	}
}

// The errors Stripe answers for a bad events query.
func TestDoubleEventListErrors(t *testing.T) {
	d := NewStripeDouble(t)
	putEvents(d, 3, 1_700_000_000)
	api := StripeClient(t, d.URL())
	many := make([]string, 21)
	for i := range many {
		many[i] = fmt.Sprintf("type.%d", i)
	}
	for _, c := range []struct {
		name  string
		p     *stripe.EventListParams
		param string
	}{
		{"type and types", &stripe.EventListParams{Type: stripe.String("invoice.paid"), Types: stripe.StringSlice([]string{"invoice.paid"})}, "types"},
		{"21 types", &stripe.EventListParams{Types: stripe.StringSlice(many)}, "types"},
		{"unknown cursor", &stripe.EventListParams{ListParams: stripe.ListParams{StartingAfter: stripe.String("evt_nope")}}, "starting_after"},
	} {
		it := api.Events.List(c.p)
		for it.Next() {
		}
		if se := stripeErr(t, it.Err()); se.HTTPStatusCode != 400 && se.HTTPStatusCode != 404 || se.Param != c.param {
			t.Errorf("%s: error %d param %q; want 400/404 on %q", c.name, se.HTTPStatusCode, se.Param, c.param)
		}
	}
}
