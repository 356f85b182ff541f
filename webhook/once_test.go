package webhook

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// The same event delivered many times at once, to two replicas (each with
// its own Redis connection): exactly one delivery processes it, every
// other waits for it and answers 200 duplicate, and Stripe is read once.
func TestConcurrentDeliveriesTakeEffectOnce(t *testing.T) {
	url := testrig.StartRedis(t, testrig.WithoutPersistence()).URL()
	d := testrig.NewStripeDouble(t)
	d.PutCustomer(&stripe.Customer{ID: "cus_once"})
	d.PutSubscription(sub("sub_once", "cus_once", "active", "price_pro", time.Now().Add(time.Hour)))
	d.Delay(50 * time.Millisecond) // processing takes a while: the deliveries overlap
	a := newRig(t, rigOptions{redis: openStoreURL(t, url), double: d})
	b := newRig(t, rigOptions{redis: openStoreURL(t, url), double: d})

	body := subEvent(t, "evt_once", "customer.subscription.updated", "cus_once", "", time.Now())
	sig := SignatureHeader(body, secret, time.Now())
	const n = 8
	results := make(chan string, n)
	var wg sync.WaitGroup
	for i := range n {
		target := a.url
		if i%2 == 1 {
			target = b.url
		}
		wg.Go(func() {
			code, resp := post(t, target, body, sig, "")
			results <- fmt.Sprint(code, " ", resp)
		})
	}
	wg.Wait()
	close(results)
	count := map[string]int{}
	for r := range results {
		switch {
		case strings.HasPrefix(r, `200 {"received":true,"result":"processed"}`):
			count["processed"]++
		case strings.HasPrefix(r, `200 {"received":true,"result":"duplicate"}`):
			count["duplicate"]++
		default:
			t.Errorf("unexpected answer %s", r)
		}
	}
	if count["processed"] != 1 || count["duplicate"] != n-1 {
		t.Errorf("answers = %v; want 1 processed and %d duplicate", count, n-1)
	}
	if got := d.Count("GET", "/v1/customers/cus_once"); got != 1 {
		t.Errorf("Stripe was read %d times for the customer; want once", got)
	}
}

// A delivery that finds the event locked by a delivery that is still
// running after BusyWait answers 503 (Stripe retries); it never claims a
// success it has not seen.
func TestBusyEventAnswers503(t *testing.T) {
	p := &pausingStripe{fetched: make(chan struct{}), release: make(chan struct{})}
	r := newRig(t, rigOptions{mutate: func(o *Options) {
		p.Stripe, o.Stripe = o.Stripe, p
		o.BusyWait = 100 * time.Millisecond
	}})
	r.double.PutCustomer(&stripe.Customer{ID: "cus_busy"})
	body := subEvent(t, "evt_busy", "customer.subscription.updated", "cus_busy", "", time.Now())
	first := make(chan int, 1)
	go func() { code, _ := r.deliver(body); first <- code }()
	<-p.fetched
	if code, resp := r.deliver(body); code != http.StatusServiceUnavailable || !strings.Contains(resp, "in_progress") {
		t.Errorf("second delivery while the first runs = %d %s; want 503 in_progress", code, resp)
	}
	close(p.release)
	if code := <-first; code != 200 {
		t.Errorf("first delivery = %d; want 200", code)
	}
	r.mustDeliver(body, resultDuplicate)
	if got := counted(r.metrics, "customer.subscription.updated", resultBusy); got != 1 {
		t.Errorf("busy counted %v; want 1", got)
	}
}

// A processing failure answers 500 and frees the event at once: Stripe's
// retry processes it (not lost, not marked done).
func TestFailedProcessingIsRetried(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.double.PutCustomer(&stripe.Customer{ID: "cus_fail"})
	r.double.PutSubscription(sub("sub_fail", "cus_fail", "active", "price_pro", time.Now().Add(time.Hour)))
	r.double.FailNextWith(1, testrig.Fault{Status: 400, Type: "invalid_request_error", ShouldRetry: "false",
		Message: "injected", Method: "GET", PathPrefix: "/v1/subscriptions"})
	body := subEvent(t, "evt_fail", "customer.subscription.created", "cus_fail", "", time.Now())
	if code, resp := r.deliver(body); code != 500 || !strings.Contains(resp, "processing_failed") || strings.Contains(resp, "injected") {
		t.Fatalf("delivery while Stripe fails = %d %s; want 500 processing_failed without Stripe's message", code, resp)
	}
	if st := r.state("cus_fail"); st != nil {
		t.Errorf("a failed event stored %+v", st)
	}
	if got, _ := r.ledger.State(context.Background(), "evt_fail"); got != "" {
		t.Errorf("ledger after a failure = %q; want the event free", got)
	}
	r.mustDeliver(body, resultProcessed)
	if want, got := r.stripeState("cus_fail"), r.state("cus_fail"); !want.SameAs(got) {
		t.Errorf("after the retry: %+v; want %+v", got, want)
	}
}

// A replica that died mid-event leaves its lock and no done marker. Until
// the lock expires deliveries answer 503 and change nothing; Stripe's next
// retry after that processes the event.
func TestLockOfADeadReplicaExpires(t *testing.T) {
	r := newRig(t, rigOptions{mutate: func(o *Options) { o.BusyWait = 50 * time.Millisecond }})
	r.double.PutCustomer(&stripe.Customer{ID: "cus_dead"})
	r.double.PutSubscription(sub("sub_dead", "cus_dead", "active", "price_pro", time.Now().Add(time.Hour)))
	ctx := context.Background()
	// The dead replica: it claimed the event (as Claim does) and vanished.
	if state, _, err := r.ledger.Claim(ctx, "evt_dead", 500*time.Millisecond); err != nil || state != Claimed {
		t.Fatalf("claim = %v, %v", state, err)
	}
	body := subEvent(t, "evt_dead", "customer.subscription.created", "cus_dead", "", time.Now())
	if code, _ := r.deliver(body); code != http.StatusServiceUnavailable {
		t.Errorf("delivery under the dead replica's lock = %d; want 503", code)
	}
	if r.state("cus_dead") != nil {
		t.Errorf("state changed under another replica's lock")
	}
	start := time.Now()
	testrig.WaitFor(t, 5*time.Second, func() error { // Stripe's retries
		if code, resp := r.deliver(body); code != 200 {
			return fmt.Errorf("retry = %d %s", code, resp)
		}
		return nil
	})
	t.Logf("processed %v after the dead replica's lock was observed", time.Since(start))
	if want, got := r.stripeState("cus_dead"), r.state("cus_dead"); !want.SameAs(got) {
		t.Errorf("after the lock expired: %+v; want %+v", got, want)
	}
	ttl, err := r.st.Client.PTTL(ctx, r.ledger.key("evt_dead")).Result()
	if err != nil || ttl < 719*time.Hour {
		t.Errorf("done marker TTL = %v, %v; want about 720h", ttl, err)
	}
}

// With Redis gone a handled event answers 500 (Stripe retries later); an
// unhandled type still answers 200, since it needs no store.
func TestStoreDownAnswers500(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	r := newRig(t, rigOptions{redis: openStoreURL(t, rd.URL())})
	rd.Kill()
	if code, _ := r.deliver(subEvent(t, "evt_down", "customer.subscription.created", "cus_down", "", time.Now())); code != 500 {
		t.Errorf("handled event with Redis down = %d; want 500", code)
	}
	other := event(t, "evt_down_other", "charge.refunded", time.Now(), map[string]any{"id": "ch_1", "object": "charge"})
	if code, _ := r.deliver(other); code != 200 {
		t.Errorf("unhandled event with Redis down = %d; want 200", code)
	}
}
