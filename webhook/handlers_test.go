package webhook

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// One case per event type of the SPEC: the double holds Stripe's truth,
// the event names the customer (its payload is deliberately stale), and
// the stored state must end as Stripe has it now, plus what tollgate itself
// records (user link, trial, payment failures).
func TestEveryHandledEventType(t *testing.T) {
	r := newRig(t, rigOptions{})
	d := r.double
	end := time.Now().Add(720 * time.Hour).Truncate(time.Second)
	type want struct {
		status       string // of the one subscription; "" for none
		hadTrial     bool
		failures     int64
		features     []string
		deleted      bool
		linkedUser   string
		customerGone bool // Stripe answers 404 for the customer
		paused       bool // collection paused until end
	}
	for _, c := range []struct {
		typ   string
		setup func(cus string) map[string]any // arranges Stripe; returns data.object
		prior *entitlements.State             // stored before the event
		want  want
	}{
		{"checkout.session.completed", func(cus string) map[string]any {
			s := sub("sub_"+cus, cus, "trialing", "price_pro", end)
			s.TrialStart, s.TrialEnd = time.Now().Unix(), end.Unix()
			d.PutSubscription(s)
			d.PutCheckoutSession(&stripe.CheckoutSession{ID: "cs_" + cus, Customer: &stripe.Customer{ID: cus},
				ClientReferenceID: "user_" + cus, Metadata: map[string]string{"user_id": "user_" + cus},
				Subscription: &stripe.Subscription{ID: s.ID}, Status: "complete"})
			return map[string]any{"id": "cs_" + cus, "object": "checkout.session", "customer": cus}
		}, nil, want{status: "trialing", hadTrial: true, linkedUser: "user_"}},
		{"checkout.session.completed", func(cus string) map[string]any {
			d.PutSubscription(sub("sub_"+cus, cus, "active", "price_pro", end))
			d.PutCheckoutSession(&stripe.CheckoutSession{ID: "cs_" + cus, Customer: &stripe.Customer{ID: cus},
				Metadata: map[string]string{"user_id": "user_" + cus}, Subscription: &stripe.Subscription{ID: "sub_" + cus}})
			return map[string]any{"id": "cs_" + cus, "object": "checkout.session"}
		}, nil, want{status: "active", linkedUser: "user_"}},
		{"customer.subscription.created", subIn(d, "active", end, nil), nil, want{status: "active"}},
		{"customer.subscription.updated", subIn(d, "active", end, func(s *stripe.Subscription) { s.CancelAtPeriodEnd = true }),
			stored("sub_x", "trialing"), want{status: "active"}},
		// Collection paused in Stripe (the portal, or subscription/pause): the refetched state carries it.
		{"customer.subscription.updated", subIn(d, "active", end, func(s *stripe.Subscription) {
			s.PauseCollection = &stripe.SubscriptionPauseCollection{Behavior: "void", ResumesAt: end.Unix()}
		}), stored("sub_x", "active"), want{status: "active", paused: true}},
		{"customer.subscription.deleted", subIn(d, "canceled", end, nil), stored("sub_x", "active"), want{}},
		{"customer.subscription.paused", subIn(d, "paused", end, nil), stored("sub_x", "active"), want{status: "paused"}},
		{"customer.subscription.resumed", subIn(d, "active", end, nil), stored("sub_x", "paused"), want{status: "active"}},
		{"customer.subscription.trial_will_end", subIn(d, "trialing", end, func(s *stripe.Subscription) { s.TrialEnd = end.Unix() }),
			nil, want{status: "trialing", hadTrial: true}},
		{"customer.subscription.pending_update_applied", subIn(d, "active", end, func(s *stripe.Subscription) {
			s.Items.Data[0].Price.ID = "price_upgraded"
		}), stored("sub_x", "active"), want{status: "active"}},
		{"customer.subscription.pending_update_expired", subIn(d, "active", end, nil), nil, want{status: "active"}},
		{"invoice.payment_failed", invoiceIn(d, "past_due", end, 2), nil, want{status: "past_due", failures: 2}},
		{"invoice.payment_action_required", invoiceIn(d, "past_due", end, 1), nil, want{status: "past_due", failures: 1}},
		{"invoice.paid", invoiceIn(d, "active", end, 0), withFailures(stored("sub_x", "past_due"), 3), want{status: "active"}},
		{"invoice.payment_succeeded", invoiceIn(d, "active", end, 0), withFailures(stored("sub_x", "past_due"), 2), want{status: "active"}},
		{"entitlements.active_entitlement_summary.updated", func(cus string) map[string]any {
			d.PutSubscription(sub("sub_"+cus, cus, "active", "price_pro", end))
			d.SetActiveEntitlements(cus, "sso", "exports")
			return map[string]any{"object": "entitlements.active_entitlement_summary", "customer": cus}
		}, nil, want{status: "active", features: []string{"exports", "sso"}}},
		{"customer.deleted", func(cus string) map[string]any {
			d.PutCustomer(&stripe.Customer{ID: cus, Deleted: true})
			return map[string]any{"id": cus, "object": "customer"}
		}, withFailures(stored("sub_x", "active"), 1), want{deleted: true, failures: 1}},
		{"customer.deleted", func(cus string) map[string]any {
			return map[string]any{"id": cus, "object": "customer"}
		}, stored("sub_x", "active"), want{deleted: true, customerGone: true}},
	} {
		t.Run(c.typ, func(t *testing.T) {
			cus := fmt.Sprintf("cus_h%d", time.Now().UnixNano())
			if !c.want.customerGone {
				d.PutCustomer(&stripe.Customer{ID: cus})
			}
			obj := c.setup(cus)
			if c.prior != nil {
				prior := *c.prior
				if err := r.store.Update(context.Background(), cus, func(*entitlements.State) (*entitlements.State, error) { return &prior, nil }); err != nil {
					t.Fatal(err)
				}
			}
			id := "evt_" + cus
			r.mustDeliver(event(t, id, c.typ, time.Now(), obj), resultProcessed)

			got := r.state(cus)
			if got == nil {
				t.Fatalf("%s: no state stored", c.typ)
			}
			var status string
			if len(got.Subscriptions) == 1 {
				status = got.Subscriptions[0].Status
			}
			if status != c.want.status || got.HadTrial != c.want.hadTrial || got.PaymentFailures != c.want.failures ||
				got.Deleted != c.want.deleted || !slices.Equal(got.Features, c.want.features) || len(got.Subscriptions) > 1 {
				t.Errorf("%s: state = status %q trial %v failures %d deleted %v features %v (%d subs); want %+v",
					c.typ, status, got.HadTrial, got.PaymentFailures, got.Deleted, got.Features, len(got.Subscriptions), c.want)
			}
			if !c.want.customerGone {
				want := r.stripeState(cus)
				want.HadTrial, want.PaymentFailures, want.FailedInvoice = got.HadTrial, got.PaymentFailures, got.FailedInvoice
				if !want.SameAs(got) {
					t.Errorf("%s: stored %+v; want Stripe's %+v", c.typ, got, want)
				}
			}
			if c.want.paused != (len(got.Subscriptions) == 1 && got.Subscriptions[0].PauseCollection != nil &&
				got.Subscriptions[0].PauseCollection.ResumesAt.Equal(end)) {
				t.Errorf("%s: pause = %+v; want paused until %v: %v", c.typ, got.Subscriptions, end, c.want.paused)
			}
			if fi := got.FailedInvoice; !c.want.deleted && (fi != nil) != (c.want.failures > 0) ||
				!c.want.deleted && fi != nil && (fi.ID != "in_"+cus || fi.AttemptCount != c.want.failures || fi.HostedInvoiceURL != "https://invoice.stripe.com/i/"+cus ||
					fi.NextPaymentAttempt.Unix() != end.Unix() || fi.AmountDue != 3000 || fi.Currency != "usd") {
				t.Errorf("%s: failed invoice = %+v; want the open invoice in_%s when payments failed", c.typ, fi, cus)
			}
			if got.Source != "webhook:"+id {
				t.Errorf("%s: source = %q; want webhook:%s", c.typ, got.Source, id)
			}
			if c.want.linkedUser != "" {
				linked, ok, err := r.store.CustomerForUser(context.Background(), c.want.linkedUser+cus)
				if err != nil || !ok || linked != cus {
					t.Errorf("%s: user link = %q, %v, %v; want %s", c.typ, linked, ok, err, cus)
				}
			}
			if got := counted(r.metrics, c.typ, resultProcessed); got < 1 {
				t.Errorf("%s: processed not counted", c.typ)
			}
		})
	}
}

// subIn puts the customer's subscription into the double and returns a
// stale payload for it.
func subIn(d *testrig.StripeDouble, status stripe.SubscriptionStatus, end time.Time, mutate func(*stripe.Subscription)) func(cus string) map[string]any {
	return func(cus string) map[string]any {
		s := sub("sub_"+cus, cus, status, "price_pro", end)
		if mutate != nil {
			mutate(s)
		}
		d.PutSubscription(s)
		return map[string]any{"id": s.ID, "object": "subscription", "customer": cus, "status": "incomplete"}
	}
}

// invoiceIn puts the customer's subscription and, with attempts > 0, an
// open invoice with that attempt count, into the double; an older paid
// invoice is always there too.
func invoiceIn(d *testrig.StripeDouble, status stripe.SubscriptionStatus, end time.Time, attempts int64) func(cus string) map[string]any {
	return func(cus string) map[string]any {
		subIn(d, status, end, nil)(cus)
		if attempts > 0 {
			d.PutInvoice(&stripe.Invoice{ID: "in_" + cus, Customer: &stripe.Customer{ID: cus}, Status: "open",
				AttemptCount: attempts, Attempted: true, Created: time.Now().Unix(), NextPaymentAttempt: end.Unix(),
				HostedInvoiceURL: "https://invoice.stripe.com/i/" + cus, AmountDue: 3000, Currency: "usd"})
		}
		d.PutInvoice(&stripe.Invoice{ID: "in_paid_" + cus, Customer: &stripe.Customer{ID: cus}, Status: "paid",
			Paid: true, AttemptCount: 4, Created: time.Now().Add(-time.Hour).Unix()})
		return map[string]any{"id": "in_x", "object": "invoice", "customer": cus, "attempt_count": 99}
	}
}

func stored(subID, status string) *entitlements.State {
	return &entitlements.State{Subscriptions: []entitlements.Subscription{{ID: subID, Status: status,
		Prices: []string{"price_old"}, CurrentPeriodEnd: time.Now().Add(time.Hour)}}, Source: "sync", UpdatedAt: time.Now()}
}

func withFailures(st *entitlements.State, n int64) *entitlements.State {
	st.PaymentFailures = n
	st.FailedInvoice = &entitlements.FailedInvoice{ID: "in_old", AttemptCount: n, HostedInvoiceURL: "https://invoice.stripe.com/i/old"}
	return st
}

// A change a webhook makes on one replica is enforced by another replica's
// gate (its own store connection and change feed) within a second.
func TestChangeEnforcedByAnotherReplica(t *testing.T) {
	url := testrig.StartRedis(t, testrig.WithoutPersistence()).URL()
	r := newRig(t, rigOptions{redis: openStoreURL(t, url)})
	r.double.PutCustomer(&stripe.Customer{ID: "cus_gate"})

	gate := entitlements.New(entitlements.Options{
		Store: entitlements.NewRedisStore(openStoreURL(t, url)), Logger: quiet,
		Plans:  map[string]*config.Plan{"pro": {Prices: []string{"price_pro"}}},
		Gating: config.Default().Gating,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { gate.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	testrig.WaitFor(t, 5*time.Second, func() error {
		if !gate.Live() {
			return fmt.Errorf("change feed not live")
		}
		return nil
	})
	req := config.Require{Subscription: true}
	if d := gate.Decide(ctx, "cus_gate", req, false); d.Allowed() {
		t.Fatalf("before any event: allowed; want 402")
	}
	for _, step := range []struct {
		status  stripe.SubscriptionStatus
		typ     string
		allowed bool
	}{
		{"active", "customer.subscription.created", true},
		{"canceled", "customer.subscription.deleted", false},
	} {
		r.double.PutSubscription(sub("sub_gate", "cus_gate", step.status, "price_pro", time.Now().Add(time.Hour)))
		start := time.Now()
		r.mustDeliver(subEvent(t, "evt_gate_"+string(step.status), step.typ, "cus_gate", "", time.Now()), resultProcessed)
		testrig.WaitFor(t, time.Second, func() error {
			if d := gate.Decide(ctx, "cus_gate", req, false); d.Allowed() != step.allowed {
				return fmt.Errorf("after %s: allowed = %v; want %v", step.typ, d.Allowed(), step.allowed)
			}
			return nil
		})
		t.Logf("%s enforced by the other gate %v after the webhook was sent", step.typ, time.Since(start))
	}
}

// A checkout that names no usable customer (Stripe has no such session, a
// guest payment without a customer) is answered 200 ignored: a retry could
// not change it.
func TestCheckoutWithoutCustomerIsIgnored(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.double.PutCheckoutSession(&stripe.CheckoutSession{ID: "cs_guest", Mode: "payment", Status: "complete"})
	for _, id := range []string{"cs_guest", "cs_missing"} {
		r.mustDeliver(event(t, "evt_"+id, "checkout.session.completed", time.Now(),
			map[string]any{"id": id, "object": "checkout.session", "customer": "cus_payload"}), resultIgnored)
	}
	if st := r.state("cus_payload"); st != nil {
		t.Errorf("the payload's customer got state %+v; want none (the session is re-read)", st)
	}
}
