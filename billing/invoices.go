package billing

import (
	"sort"
	"strconv"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/stripeapi"
	"github.com/tollgate-dev/tollgate/proxy"
)

type invoiceAnswer struct {
	ID          string    `json:"id"`
	Number      string    `json:"number"`
	Status      string    `json:"status"`
	Currency    string    `json:"currency"`
	AmountDue   int64     `json:"amount_due"`
	AmountPaid  int64     `json:"amount_paid"`
	Total       int64     `json:"total"`
	Created     time.Time `json:"created"`
	PeriodStart time.Time `json:"period_start"`
	PeriodEnd   time.Time `json:"period_end"`
	HostedURL   string    `json:"hosted_invoice_url"`
	PDF         string    `json:"invoice_pdf"`
}

type invoicesAnswer struct {
	Data    []invoiceAnswer `json:"data"`
	HasMore bool            `json:"has_more"`
}

// invoices lists the caller's invoices, newest first, one page at a time:
// ?limit=1..100 (default 10) and ?starting_after=<the last id of a page>.
func (h *Handler) invoices(c *call) (any, *proxy.HTTPError) {
	customer, herr := c.customer()
	if herr != nil {
		return nil, herr
	}
	q := c.r.URL.Query()
	limit := int64(10)
	if s := q.Get("limit"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 || n > 100 {
			return nil, badRequest("limit must be a whole number from 1 to 100.")
		}
		limit = n
	}
	p := &stripe.InvoiceListParams{Customer: stripe.String(customer)}
	p.Context = c.ctx
	p.Limit = stripe.Int64(limit)
	p.Single = true // one page, not the whole history
	if after := q.Get("starting_after"); after != "" {
		if !validID(after, "in_") {
			return nil, badRequest("starting_after must be an invoice id (in_...).")
		}
		p.StartingAfter = stripe.String(after)
	}
	it := h.api.Invoices.List(p)
	a := invoicesAnswer{Data: []invoiceAnswer{}}
	for it.Next() {
		in := it.Invoice()
		a.Data = append(a.Data, invoiceAnswer{ID: in.ID, Number: in.Number, Status: string(in.Status),
			Currency: string(in.Currency), AmountDue: in.AmountDue, AmountPaid: in.AmountPaid, Total: in.Total,
			Created: stripeapi.Time(in.Created), PeriodStart: stripeapi.Time(in.PeriodStart), PeriodEnd: stripeapi.Time(in.PeriodEnd),
			HostedURL: in.HostedInvoiceURL, PDF: in.InvoicePDF})
	}
	if err := it.Err(); err != nil {
		return nil, stripeFailure(err)
	}
	if m := it.Meta(); m != nil {
		a.HasMore = m.HasMore
	}
	return a, nil
}

// validID accepts a Stripe id with the given prefix (letters, digits, _).
func validID(s, prefix string) bool {
	if len(s) <= len(prefix) || len(s) > 255 || s[:len(prefix)] != prefix {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

type meterUsage struct {
	Meter string `json:"meter"`
	Used  *int64 `json:"used"`  // in the current period; null without one
	Limit *int64 `json:"limit"` // the plan's; null when unlimited
}

type usageAnswer struct {
	Customer    string       `json:"customer"`
	PeriodStart time.Time    `json:"period_start,omitzero"`
	PeriodEnd   time.Time    `json:"period_end,omitzero"`
	Meters      []meterUsage `json:"meters"`
}

// usage reports, per configured meter, what the caller used in the
// current billing period and the plan's limit: the numbers the quota of
// a metered route is enforced on.
func (h *Handler) usage(c *call) (any, *proxy.HTTPError) {
	a := usageAnswer{Customer: c.id.Customer, Meters: []meterUsage{}}
	names := make([]string, 0, len(h.cfg.Metering.Meters))
	for n := range h.cfg.Metering.Meters {
		names = append(names, n)
	}
	sort.Strings(names)
	if c.id.Customer == "" {
		for _, n := range names {
			a.Meters = append(a.Meters, meterUsage{Meter: n})
		}
		return a, nil
	}
	d := h.gate.Decide(c.ctx, c.id.Customer, config.Require{}, false)
	if d.Denial != nil {
		return nil, errUnavailable
	}
	a.PeriodStart, a.PeriodEnd = d.PeriodStart, d.PeriodEnd
	for _, n := range names {
		mu := meterUsage{Meter: n}
		if limit, ok := d.Limit(n); ok {
			mu.Limit = &limit
		}
		if h.used != nil && !d.PeriodStart.IsZero() {
			used, err := h.used(c.ctx, c.id.Customer, n, d.PeriodStart)
			if err != nil {
				return nil, errUnavailable.WithCause(err)
			}
			mu.Used = &used
		}
		a.Meters = append(a.Meters, mu)
	}
	return a, nil
}
