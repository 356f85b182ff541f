package sidecar

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// trialSub is a subscription to pro in the double, trialing until
// trialEnd unless status says otherwise.
func trialSub(customer string, status stripe.SubscriptionStatus, trialEnd time.Time) *stripe.Subscription {
	now := time.Now()
	return &stripe.Subscription{ID: "sub_" + customer, Customer: &stripe.Customer{ID: customer}, Status: status,
		TrialStart: now.Add(-time.Hour).Unix(), TrialEnd: trialEnd.Unix(),
		CurrentPeriodStart: now.Add(-time.Hour).Unix(), CurrentPeriodEnd: trialEnd.Unix(),
		Items: &stripe.SubscriptionItemList{Data: []*stripe.SubscriptionItem{{ID: "si_" + customer, Quantity: 1,
			Price: &stripe.Price{ID: "price_pro"}}}}}
}

// conversions sums tollgate_trial_conversions_total{plan="pro"} of each
// result over the replicas.
func conversions(t *testing.T, rs ...*running) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, r := range rs {
		fams := scrape(t, r.sc.AdminAddr())
		for _, result := range []string{"converted", "canceled", "expired"} {
			v, ok := seriesValue(fams, "tollgate_trial_conversions_total", "plan=pro,result="+result)
			if !ok {
				t.Fatalf("tollgate_trial_conversions_total{plan=pro,result=%s} is not exported", result)
			}
			out[result] += v
		}
	}
	return out
}

// Each trial's end is counted once across replicas: the converting event
// delivered to two replicas at once, redelivered, and followed by another
// event that finds the same state, counts one conversion; a trial canceled
// by the customer and one Stripe ended unpaid at its end count one each.
func TestTrialConversionsCountedOnceAcrossReplicas(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	d := testrig.NewStripeDouble(t)
	app := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer app.Close()
	a := start(t, webhookConfig(t, app.URL, rd.URL(), d.URL()))
	b := start(t, webhookConfig(t, app.URL, rd.URL(), d.URL()))
	if got := conversions(t, a, b); got["converted"]+got["canceled"]+got["expired"] != 0 {
		t.Fatalf("at start: %v; want every result at 0", got)
	}
	trialEnd := time.Now().Add(72 * time.Hour)
	deliver := func(r *running, id, typ, customer string) {
		t.Helper()
		body := newEvent(t, id, typ, map[string]any{"id": "sub_" + customer, "object": "subscription", "customer": customer})
		if code, resp := postEvent(t, r, body); code != http.StatusOK {
			t.Fatalf("%s to a replica = %d %s", id, code, resp)
		}
	}
	for _, c := range []string{"cus_conv", "cus_quit", "cus_lapse"} {
		d.PutCustomer(&stripe.Customer{ID: c})
		d.PutSubscription(trialSub(c, stripe.SubscriptionStatusTrialing, trialEnd))
		deliver(a, "evt_start_"+c, "customer.subscription.created", c)
	}

	// Converted: the same event at both replicas at once, then again.
	d.PutSubscription(trialSub("cus_conv", stripe.SubscriptionStatusActive, trialEnd))
	d.Delay(20 * time.Millisecond) // the two deliveries overlap
	body := newEvent(t, "evt_conv", "customer.subscription.updated", map[string]any{"id": "sub_cus_conv", "object": "subscription", "customer": "cus_conv"})
	var wg sync.WaitGroup
	for _, r := range []*running{a, b} {
		wg.Go(func() {
			if code, resp := postEvent(t, r, body); code != http.StatusOK {
				t.Errorf("evt_conv = %d %s", code, resp)
			}
		})
	}
	wg.Wait()
	d.Delay(0)
	if code, resp := postEvent(t, b, body); code != http.StatusOK {
		t.Fatalf("redelivered evt_conv = %d %s", code, resp)
	}
	deliver(b, "evt_conv_paid", "invoice.paid", "cus_conv") // another event, the same state

	// Canceled by the customer during the trial.
	quit := trialSub("cus_quit", stripe.SubscriptionStatusCanceled, trialEnd)
	quit.CanceledAt, quit.EndedAt = time.Now().Unix(), time.Now().Unix()
	quit.CancellationDetails = &stripe.SubscriptionCancellationDetails{Reason: stripe.SubscriptionCancellationDetailsReasonCancellationRequested}
	d.PutSubscription(quit)
	deliver(b, "evt_quit", "customer.subscription.deleted", "cus_quit")

	// Ended by Stripe at the trial's end, no payment method.
	lapse := trialSub("cus_lapse", stripe.SubscriptionStatusCanceled, time.Now().Add(-time.Minute))
	lapse.CanceledAt, lapse.EndedAt = time.Now().Unix(), time.Now().Unix()
	d.PutSubscription(lapse)
	deliver(a, "evt_lapse", "customer.subscription.deleted", "cus_lapse")
	deliver(b, "evt_lapse", "customer.subscription.deleted", "cus_lapse") // redelivered to the other replica

	want := map[string]float64{"converted": 1, "canceled": 1, "expired": 1}
	if got := conversions(t, a, b); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("trial conversions summed over both replicas = %v; want %v", got, want)
	}
}
