package stack

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/webhook"
)

// Subscriber is a customer Stripe created at checkout.
type Subscriber struct {
	Customer     string
	Subscription string
	Trial        bool // the subscription starts trialing (billing.trial_days)
}

// CompleteCheckout plays Stripe's part once the customer paid on the
// Checkout page: the customer, a subscription to plan and its first invoice
// exist, the session is complete, and checkout.session.completed is posted
// to tollgate's webhook, signed as Stripe signs it. It returns the event's
// body (tollgate forwards it to the app byte for byte).
func (s *Stack) CompleteCheckout(sessionID, plan string, sub Subscriber) []byte {
	s.t.Helper()
	now := time.Now()
	s.Stripe.PutCustomer(&stripe.Customer{ID: sub.Customer})
	st := &stripe.Subscription{ID: sub.Subscription, Customer: &stripe.Customer{ID: sub.Customer}, Status: "active",
		CurrentPeriodStart: now.Add(-time.Hour).Unix(), CurrentPeriodEnd: now.Add(30 * 24 * time.Hour).Unix(),
		Items: &stripe.SubscriptionItemList{Data: []*stripe.SubscriptionItem{{ID: "si_" + sub.Subscription, Quantity: 1,
			Price: &stripe.Price{ID: "price_" + plan, UnitAmount: prices[plan], Currency: "usd", Active: true,
				Type: stripe.PriceTypeRecurring, Recurring: &stripe.PriceRecurring{Interval: "month", IntervalCount: 1, UsageType: "licensed"}}}}}}
	if sub.Trial {
		st.Status, st.TrialStart, st.TrialEnd = "trialing", st.CurrentPeriodStart, now.Add(14*24*time.Hour).Unix()
	}
	s.Stripe.PutSubscription(st)
	s.Stripe.CompleteCheckoutSession(sessionID, sub.Customer, sub.Subscription)
	s.Stripe.PutInvoice(&stripe.Invoice{ID: "in_first_" + sub.Customer, Customer: &stripe.Customer{ID: sub.Customer},
		Number: "EX-0001", Status: "paid", Currency: "usd", Total: 0, AmountPaid: 0, Created: now.Unix(),
		PeriodStart: now.Unix(), PeriodEnd: now.Unix(), Subscription: &stripe.Subscription{ID: sub.Subscription},
		HostedInvoiceURL: "https://invoice.stripe.com/i/" + sub.Customer, InvoicePDF: "https://pay.stripe.com/invoice/" + sub.Customer + "/pdf"})
	return s.PostEvent("evt_checkout_"+sub.Customer, "checkout.session.completed",
		map[string]any{"id": sessionID, "object": "checkout.session", "customer": sub.Customer, "subscription": sub.Subscription,
			"customer_details": map[string]any{"email": "new@example.com"}})
}

// EndTrial plays the end of the trial: Stripe charges the first invoice,
// the subscription turns active with a new period (one hour old, so a plan
// change now prorates), and customer.subscription.updated is sent.
func (s *Stack) EndTrial(sub Subscriber) {
	s.t.Helper()
	now := time.Now()
	st := s.Subscription(sub)
	st.Status, st.TrialEnd = "active", now.Add(-time.Hour).Unix()
	st.CurrentPeriodStart, st.CurrentPeriodEnd = st.TrialEnd, now.Add(30*24*time.Hour).Unix()
	s.Stripe.PutSubscription(st)
	s.PostEvent("evt_trial_ended_"+sub.Customer, "customer.subscription.updated",
		map[string]any{"id": sub.Subscription, "object": "subscription", "customer": sub.Customer, "status": "active"})
}

// FailPayment plays a failed renewal: an open invoice for amount with one
// failed attempt and a retry in 3 days, the subscription past_due, and
// invoice.payment_failed. It returns the invoice's hosted page, the link a
// "fix your payment" banner must show.
func (s *Stack) FailPayment(sub Subscriber, amount int64) string {
	s.t.Helper()
	hosted := "https://invoice.stripe.com/i/acct_example/failed_" + sub.Customer
	s.Stripe.PutInvoice(&stripe.Invoice{ID: "in_failed_" + sub.Customer, Customer: &stripe.Customer{ID: sub.Customer},
		Number: "EX-0002", Status: "open", Currency: "usd", AmountDue: amount, Total: amount, AttemptCount: 1, Attempted: true,
		NextPaymentAttempt: time.Now().Add(3 * 24 * time.Hour).Unix(), Created: time.Now().Unix(),
		Subscription: &stripe.Subscription{ID: sub.Subscription}, HostedInvoiceURL: hosted,
		InvoicePDF: "https://pay.stripe.com/invoice/failed_" + sub.Customer + "/pdf"})
	st := s.Subscription(sub)
	st.Status = "past_due"
	s.Stripe.PutSubscription(st)
	s.PostEvent("evt_failed_"+sub.Customer, "invoice.payment_failed",
		map[string]any{"id": "in_failed_" + sub.Customer, "object": "invoice", "customer": sub.Customer,
			"subscription": sub.Subscription, "attempt_count": 1, "hosted_invoice_url": hosted})
	return hosted
}

// Charged is the invoice that the subscription's last change charged at
// once (its latest invoice, created by a change with always_invoice), or
// nil when the latest invoice is another one.
func (s *Stack) Charged(sub Subscriber) *stripe.Invoice {
	s.t.Helper()
	st := s.Subscription(sub)
	if st.LatestInvoice == nil {
		return nil
	}
	inv, ok := s.Stripe.Invoice(st.LatestInvoice.ID)
	if !ok || inv.BillingReason != stripe.InvoiceBillingReasonSubscriptionUpdate {
		return nil
	}
	return inv
}

// ChangedAsOf is the proration_date of the last update of the
// subscription's items that Stripe received ("" when none had one).
func (s *Stack) ChangedAsOf(sub Subscriber) string {
	reqs := s.Stripe.Requests()
	for i := len(reqs) - 1; i >= 0; i-- {
		r := reqs[i]
		if r.Method == http.MethodPost && r.Path == "/v1/subscriptions/"+sub.Subscription && r.Form.Has("items[0][price]") {
			return r.Form.Get("proration_date")
		}
	}
	return ""
}

// Subscription is the subscription as Stripe has it now.
func (s *Stack) Subscription(sub Subscriber) *stripe.Subscription {
	s.t.Helper()
	st, ok := s.Stripe.Subscription(sub.Subscription)
	if !ok {
		s.t.Fatalf("the double has no subscription %s", sub.Subscription)
	}
	return st
}

// USD is an amount in cents as the example pages show it: $1,234.50.
func USD(cents int64) string {
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	d := strconv.FormatInt(cents/100, 10)
	for i := len(d) - 3; i > 0; i -= 3 {
		d = d[:i] + "," + d[i:]
	}
	return fmt.Sprintf("%s$%s.%02d", sign, d, cents%100)
}

// PostEvent signs an event as Stripe does and delivers it to tollgate's
// webhook endpoint; tollgate must answer 200.
func (s *Stack) PostEvent(id, typ string, obj map[string]any) []byte {
	s.t.Helper()
	body, err := webhook.NewEvent(id, typ, time.Now(), obj)
	if err != nil {
		s.t.Fatal(err)
	}
	if code, answer := s.deliver(s.URL+"/_tollgate/stripe/webhook", body, webhookSecret); code != http.StatusOK {
		s.t.Fatalf("tollgate's webhook answered %s to %d %s", typ, code, answer)
	}
	return body
}

// Redeliver posts body to the app's webhook receiver directly, signed
// with secret, as tollgate's forwarder does when it retries a delivery.
func (s *Stack) Redeliver(body []byte, secret string) (int, string) {
	s.t.Helper()
	return s.deliver(s.AppURL+"/webhooks/tollgate", body, secret)
}

func (s *Stack) deliver(url string, body []byte, secret string) (int, string) {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Stripe-Signature", webhook.SignatureHeader(body, secret, time.Now()))
	resp, err := (&http.Client{Timeout: requestTimeout}).Do(req)
	if err != nil {
		s.t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
