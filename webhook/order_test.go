package webhook

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/entitlements"
)

// Stripe does not guarantee delivery order. Whatever order the events
// arrive in, the stored state ends as the double holds it now: each
// delivery re-reads Stripe, and its payload (here deliberately contrary)
// is never used.
func TestDeliveryOrderDoesNotMatter(t *testing.T) {
	r := newRig(t, rigOptions{})
	t0 := time.Now().Add(-time.Hour)
	for _, c := range []struct {
		name   string
		stripe stripe.SubscriptionStatus // the subscription as Stripe has it now
		cancel bool
		order  []delivery
	}{
		{"updated (new) then updated (old)", "active", true, []delivery{
			{"customer.subscription.updated", 2 * time.Minute, "active"},
			{"customer.subscription.updated", time.Minute, "trialing"},
		}},
		{"deleted then a late updated", "canceled", false, []delivery{
			{"customer.subscription.deleted", 3 * time.Minute, "canceled"},
			{"customer.subscription.updated", time.Minute, "active"},
		}},
		{"created after updated", "past_due", false, []delivery{
			{"customer.subscription.updated", 2 * time.Minute, "past_due"},
			{"customer.subscription.created", 0, "incomplete"},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cus := fmt.Sprintf("cus_o%d", time.Now().UnixNano())
			r.double.PutCustomer(&stripe.Customer{ID: cus})
			s := sub("sub_"+cus, cus, c.stripe, "price_pro", time.Now().Add(time.Hour))
			s.CancelAtPeriodEnd = c.cancel
			r.double.PutSubscription(s)
			want := r.stripeState(cus)
			for i, d := range c.order {
				r.mustDeliver(subEvent(t, fmt.Sprintf("evt_%s_%d", cus, i), d.typ, cus, d.payload, t0.Add(d.created)), resultProcessed)
				if got := r.state(cus); !want.SameAs(got) {
					t.Errorf("after delivery %d (%s, payload %s): stored %+v; want Stripe's %+v", i, d.typ, d.payload, got, want)
				}
			}
		})
	}
}

// pausingStripe holds the first Fetch after it has read Stripe, until
// released: an event whose re-read is overtaken by a newer one.
type pausingStripe struct {
	Stripe
	once    sync.Once
	fetched chan struct{}
	release chan struct{}
}

func (p *pausingStripe) Fetch(ctx context.Context, customer string) (*entitlements.State, error) {
	st, err := p.Stripe.Fetch(ctx, customer)
	first := false
	p.once.Do(func() { first = true })
	if first {
		close(p.fetched)
		<-p.release
	}
	return st, err
}

// The concurrency argument, pinned: event A reads Stripe (old state), stalls;
// Stripe changes; event B reads the new state and commits. When A resumes,
// its write must not roll the state back: the store's WATCH sees B's
// commit, A's update runs again and re-reads Stripe.
func TestOvertakenReadIsRedone(t *testing.T) {
	p := &pausingStripe{fetched: make(chan struct{}), release: make(chan struct{})}
	r := newRig(t, rigOptions{mutate: func(o *Options) { p.Stripe = o.Stripe; o.Stripe = p }})
	r.double.PutCustomer(&stripe.Customer{ID: "cus_race"})
	r.double.PutSubscription(sub("sub_race", "cus_race", "trialing", "price_old", time.Now().Add(time.Hour)))

	aDone := make(chan string, 1)
	go func() {
		code, body := r.deliver(subEvent(t, "evt_race_a", "customer.subscription.updated", "cus_race", "", time.Now()))
		aDone <- fmt.Sprint(code, " ", body)
	}()
	<-p.fetched // A has read "trialing, price_old" and is stalled
	r.double.PutSubscription(sub("sub_race", "cus_race", "active", "price_new", time.Now().Add(2*time.Hour)))
	r.mustDeliver(subEvent(t, "evt_race_b", "customer.subscription.updated", "cus_race", "", time.Now()), resultProcessed)
	close(p.release)
	if got := <-aDone; got[:3] != "200" {
		t.Fatalf("event A = %s; want 200", got)
	}
	want := r.stripeState("cus_race")
	if got := r.state("cus_race"); !want.SameAs(got) {
		t.Errorf("after the overtaken event: stored %+v; want Stripe's %+v (rolled back to A's stale read)", got, want)
	}
}

// Trusted payload mode (no Stripe key) has nothing to re-read: an event
// created before the stored state's event is not applied.
func TestTrustedPayloadOrder(t *testing.T) {
	r := newRig(t, rigOptions{embedded: true, trusted: true})
	t0 := time.Now().Add(-time.Hour)
	for _, c := range []struct {
		name       string
		order      []delivery
		wantStatus string // "" = no subscription left
		wantResult []string
	}{
		{"updated (new) then updated (old)", []delivery{
			{"customer.subscription.updated", 2 * time.Minute, "active"},
			{"customer.subscription.updated", time.Minute, "trialing"},
		}, "active", []string{resultProcessed, resultStale}},
		{"deleted then a late updated", []delivery{
			{"customer.subscription.created", 0, "active"},
			{"customer.subscription.deleted", 3 * time.Minute, ""},
			{"customer.subscription.updated", time.Minute, "active"},
		}, "", []string{resultProcessed, resultProcessed, resultStale}},
		{"created after updated", []delivery{
			{"customer.subscription.updated", 2 * time.Minute, "past_due"},
			{"customer.subscription.created", 0, "incomplete"},
		}, "past_due", []string{resultProcessed, resultStale}},
		{"same second: arrival order", []delivery{
			{"customer.subscription.created", time.Minute, "trialing"},
			{"customer.subscription.updated", time.Minute, "active"},
		}, "active", []string{resultProcessed, resultProcessed}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cus := fmt.Sprintf("cus_p%d", time.Now().UnixNano())
			for i, d := range c.order {
				r.mustDeliver(subEvent(t, fmt.Sprintf("evt_%s_%d", cus, i), d.typ, cus, d.payload, t0.Add(d.created)), c.wantResult[i])
			}
			got := r.state(cus)
			status := ""
			if len(got.Subscriptions) == 1 {
				status = got.Subscriptions[0].Status
			}
			if status != c.wantStatus || len(got.Subscriptions) > 1 {
				t.Errorf("final subscriptions = %+v; want one with status %q (none if empty)", got.Subscriptions, c.wantStatus)
			}
		})
	}
}

type delivery struct {
	typ     string
	created time.Duration // after the test's t0
	payload string        // the subscription status the payload says
}
