package stack

import (
	"io"
	"net/http"
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

// FailPayment plays a failed renewal: an open invoice with one failed
// attempt, and invoice.payment_failed.
func (s *Stack) FailPayment(sub Subscriber) {
	s.t.Helper()
	next := time.Now().Add(3 * 24 * time.Hour).Unix()
	s.Stripe.PutInvoice(&stripe.Invoice{ID: "in_failed_" + sub.Customer, Customer: &stripe.Customer{ID: sub.Customer},
		Number: "EX-0002", Status: "open", Currency: "usd", AmountDue: 8000, Total: 8000, AttemptCount: 1, Attempted: true,
		NextPaymentAttempt: next, Created: time.Now().Unix(), Subscription: &stripe.Subscription{ID: sub.Subscription},
		HostedInvoiceURL: "https://invoice.stripe.com/i/failed_" + sub.Customer})
	s.PostEvent("evt_failed_"+sub.Customer, "invoice.payment_failed",
		map[string]any{"id": "in_failed_" + sub.Customer, "object": "invoice", "customer": sub.Customer})
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
