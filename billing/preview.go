package billing

import (
	"errors"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/proxy"
)

// invoiceView is one invoice a plan change bills: what is due at once, or
// the next regular invoice.
type invoiceView struct {
	// Amount is what will be charged, in the currency's smallest unit: the
	// invoice's amount_due, never negative (a credit stays on the customer's
	// balance for later invoices).
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	// Date is when the invoice is billed: now for due_now, the period end
	// for next_invoice.
	Date  time.Time     `json:"date"`
	Lines []previewLine `json:"lines"`
}

type previewLine struct {
	Description string `json:"description"`
	Amount      int64  `json:"amount"`
	Proration   bool   `json:"proration"`
}

type previewAnswer struct {
	target
	// ProrationDate (Unix seconds) is the moment the prorations are worked
	// out for; pass it to change, which then charges DueNow exactly.
	ProrationDate int64        `json:"proration_date"`
	DueNow        invoiceView  `json:"due_now"`
	NextInvoice   *invoiceView `json:"next_invoice"` // nil when Stripe has none to show
	// Withdraws is the pending downgrade the change would withdraw.
	Withdraws *pendingChange `json:"withdraws,omitempty"`
}

// preview shows what a plan change would bill, asking Stripe with the
// proration behaviour the change itself uses, as of proration_date: for
// an upgrade with always_invoice, the invoice the change creates and
// charges at once (due_now) and the next regular invoice at the new
// prices; with create_prorations nothing is due now and the next invoice
// carries the prorations; for a downgrade, nothing now and the first
// invoice at the new prices.
func (h *Handler) preview(c *call) (any, *proxy.HTTPError) {
	pc, herr := h.planRequest(c)
	if herr != nil {
		return nil, herr
	}
	a := previewAnswer{target: pc.describe(), ProrationDate: pc.date, Withdraws: pc.withdraw,
		DueNow: invoiceView{Currency: pc.target.currency(), Date: time.Unix(pc.date, 0).UTC(), Lines: []previewLine{}}}
	if pc.withdraw != nil {
		// Nothing is billed by withdrawing; Stripe cannot preview the
		// subscription without its schedule, so no next invoice is shown.
		return a, nil
	}
	behavior := pc.prorationBehavior(h.cfg.Billing.UpgradeProration)
	inv, herr := h.upcoming(c, pc, behavior)
	if herr != nil {
		return nil, herr
	}
	if behavior != "always_invoice" || !prorates(inv) {
		a.NextInvoice = h.invoiceView(inv, pc, nil)
		return a, nil
	}
	a.DueNow = *h.invoiceView(inv, pc, nil)
	a.DueNow.Date = time.Unix(pc.date, 0).UTC()
	next, herr := h.upcoming(c, pc, "none")
	if herr != nil {
		return nil, herr
	}
	// Pending invoice items are swept into the invoice due now; they are
	// not billed again at the period end.
	a.NextInvoice = h.invoiceView(next, pc, invoiceItems(inv))
	return a, nil
}

// prorationBehavior is how the change bills: an upgrade as configured, a
// downgrade (at the period end, through a schedule) not at all.
func (p *plannedChange) prorationBehavior(upgrade string) string {
	if p.upgrade {
		return upgrade
	}
	return "none"
}

// upcoming asks Stripe for the invoice the change would produce with
// behavior; nil when Stripe has no upcoming invoice.
func (h *Handler) upcoming(c *call, pc *plannedChange, behavior string) (*stripe.Invoice, *proxy.HTTPError) {
	p := &stripe.InvoiceUpcomingParams{
		Customer:                      stripe.String(c.id.Customer),
		Subscription:                  stripe.String(pc.sub.ID),
		SubscriptionItems:             pc.items,
		SubscriptionProrationDate:     stripe.Int64(pc.date),
		SubscriptionProrationBehavior: stripe.String(behavior),
	}
	p.Context = c.ctx
	inv, err := h.api.Invoices.Upcoming(p)
	var se *stripe.Error
	if errors.As(err, &se) && se.Code == stripe.ErrorCodeInvoiceUpcomingNone {
		return nil, nil
	}
	if err != nil {
		return nil, stripeFailure(err)
	}
	return inv, nil
}

// prorates reports whether a preview holds proration lines: with
// always_invoice Stripe then previews the invoice the change creates at
// once; without any it shows the next regular invoice.
func prorates(inv *stripe.Invoice) bool {
	if inv == nil || inv.Lines == nil {
		return false
	}
	for _, l := range inv.Lines.Data {
		if l.Proration {
			return true
		}
	}
	return false
}

// invoiceItems lists the invoice items (pending before the change) an
// invoice bills.
func invoiceItems(inv *stripe.Invoice) map[string]bool {
	out := map[string]bool{}
	if inv != nil && inv.Lines != nil {
		for _, l := range inv.Lines.Data {
			if l.InvoiceItem != nil && l.InvoiceItem.ID != "" {
				out[l.InvoiceItem.ID] = true
			}
		}
	}
	return out
}

// invoiceView shows a previewed invoice, leaving out the lines of invoice
// items already billed elsewhere (and their amounts).
func (h *Handler) invoiceView(inv *stripe.Invoice, pc *plannedChange, billed map[string]bool) *invoiceView {
	if inv == nil {
		return nil
	}
	v := &invoiceView{Amount: inv.AmountDue, Currency: string(inv.Currency), Lines: []previewLine{},
		Date: time.Unix(pc.sub.CurrentPeriodEnd, 0).UTC()}
	if inv.Lines == nil {
		return v
	}
	for _, l := range inv.Lines.Data {
		if l.InvoiceItem != nil && billed[l.InvoiceItem.ID] {
			v.Amount = max(v.Amount-l.Amount, 0)
			continue
		}
		v.Lines = append(v.Lines, previewLine{Description: l.Description, Amount: l.Amount, Proration: l.Proration})
	}
	return v
}
