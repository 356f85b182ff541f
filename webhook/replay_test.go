package webhook

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// replayer returns a Replayer on the rig's store, ledger, log and double.
func (r *rig) replayer(mutate func(*ReplayOptions)) *Replayer {
	r.t.Helper()
	api := NewStripeAPI(testrig.StripeClient(r.t, r.double.URL()))
	o := ReplayOptions{Options: Options{Store: r.store, Ledger: r.ledger, Stripe: api, Deliveries: r.log,
		Metrics: r.metrics, Logger: quiet}, Events: api, Rate: 1000}
	if mutate != nil {
		mutate(&o)
	}
	rp, err := NewReplayer(o)
	if err != nil {
		r.t.Fatal(err)
	}
	return rp
}

// lostEvent puts a customer with an active subscription and a
// customer.subscription.created event about it into the double, and
// returns the event's body: an event Stripe has whose webhook never
// arrived.
func (r *rig) lostEvent(id, customer string, created time.Time) []byte {
	r.t.Helper()
	r.double.PutCustomer(&stripe.Customer{ID: customer})
	r.double.PutSubscription(sub("sub_"+customer, customer, "active", "price_pro", time.Now().Add(time.Hour)))
	body := subEvent(r.t, id, "customer.subscription.created", customer, "", created)
	r.double.PutEventJSON(body)
	return body
}

// twoReplicas returns two rigs, each with its own connection, on one
// Redis and one double.
func twoReplicas(t *testing.T) (a, b *rig, d *testrig.StripeDouble) {
	t.Helper()
	url := testrig.StartRedis(t, testrig.WithoutPersistence()).URL()
	d = testrig.NewStripeDouble(t)
	a = newRig(t, rigOptions{redis: openStoreURL(t, url), double: d})
	b = newRig(t, rigOptions{redis: openStoreURL(t, url), double: d})
	return a, b, d
}

func mustReplay(t *testing.T, rp *Replayer, since time.Time, dryRun bool) ReplayReport {
	t.Helper()
	rep, err := rp.Run(context.Background(), since, dryRun)
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	return rep
}

// A webhook lost on the way (Stripe has the event, tollgate never saw it)
// is applied by a replay, recorded in the delivery log as a replay, and
// then is done: the late webhook and the next replay are duplicates.
func TestReplayHealsALostWebhook(t *testing.T) {
	r := newRig(t, rigOptions{})
	body := r.lostEvent("evt_lost", "cus_lost", time.Now().Add(-time.Minute))
	// A lost checkout too: only its event links the user to the customer.
	r.double.PutCheckoutSession(&stripe.CheckoutSession{ID: "cs_lost", Customer: &stripe.Customer{ID: "cus_lost"},
		Metadata: map[string]string{"user_id": "user_lost"}, Subscription: &stripe.Subscription{ID: "sub_cus_lost"}})
	r.double.PutEventJSON(event(t, "evt_lost_checkout", "checkout.session.completed", time.Now().Add(-time.Minute),
		map[string]any{"id": "cs_lost", "object": "checkout.session"}))
	// Not handled: listed only without the types filter, never applied.
	r.double.PutEventJSON(event(t, "evt_lost_charge", "charge.refunded", time.Now(), map[string]any{"id": "ch_1", "object": "charge"}))
	if r.state("cus_lost") != nil {
		t.Fatal("setup: state before the replay")
	}

	rep := mustReplay(t, r.replayer(nil), time.Now().Add(-time.Hour), false)
	if rep.Listed != 2 || rep.Results[resultProcessed] != 2 || len(rep.Events) != 2 {
		t.Fatalf("replay = %+v; want 2 listed, 2 processed", rep)
	}
	if want, got := r.stripeState("cus_lost"), r.state("cus_lost"); !want.SameAs(got) {
		t.Errorf("after the replay: %+v; want Stripe's %+v", got, want)
	}
	if c, ok, err := r.store.CustomerForUser(context.Background(), "user_lost"); err != nil || !ok || c != "cus_lost" {
		t.Errorf("user link after the replayed checkout = %q %v %v; want cus_lost", c, ok, err)
	}
	for _, ev := range []string{"evt_lost", "evt_lost_checkout"} {
		if got, _ := r.ledger.State(context.Background(), ev); got != "done" {
			t.Errorf("ledger for %s after the replay = %q; want done", ev, got)
		}
		log := r.deliveries(Filter{Event: ev})
		if len(log) != 1 || log[0].Source != SourceReplay || log[0].Result != resultProcessed || log[0].Customer != "cus_lost" {
			t.Errorf("delivery log for %s = %+v; want one processed replay for cus_lost", ev, log)
		}
	}
	if got := testutil.ToFloat64(r.metrics.WebhookReplayed.WithLabelValues(resultProcessed)); got != 2 {
		t.Errorf("tollgate_webhook_replayed_total{result=processed} = %v; want 2", got)
	}

	reads := r.double.Count("GET", "/v1/customers/cus_lost")
	r.mustDeliver(body, resultDuplicate)
	again := mustReplay(t, r.replayer(nil), time.Now().Add(-time.Hour), false)
	if again.Results[resultDuplicate] != 2 || len(again.Events) != 0 {
		t.Errorf("second replay = %+v; want 2 duplicates and nothing applied", again)
	}
	if n := r.double.Count("GET", "/v1/customers/cus_lost") - reads; n != 0 {
		t.Errorf("the late webhook and the second replay read the customer %d times; want 0", n)
	}
	if got := len(r.deliveries(Filter{Source: SourceReplay})); got != 2 {
		t.Errorf("replay entries in the log = %d; want 2 (duplicates are not recorded)", got)
	}
}

// The same event replayed and delivered at the same moment (and replayed
// by two replicas at once): one effect, one Stripe read of the customer,
// every other taker sees a duplicate.
func TestReplayAndDeliveryRace(t *testing.T) {
	a, b, d := twoReplicas(t)
	customers := []string{"cus_race_a", "cus_race_b", "cus_race_c"}
	bodies := map[string][]byte{}
	for _, c := range customers {
		bodies[c] = a.lostEvent("evt_"+c, c, time.Now().Add(-time.Minute))
	}
	d.Delay(30 * time.Millisecond) // processing takes a while: the takers overlap

	results := make(chan string, 4*len(customers)+2)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for _, c := range customers {
		for _, rg := range []*rig{a, b} {
			wg.Go(func() {
				<-gate
				code, resp := rg.deliver(bodies[c])
				results <- fmt.Sprintf("%s webhook %d %s", c, code, resp)
			})
		}
	}
	for _, rg := range []*rig{a, b} {
		rp := rg.replayer(nil)
		wg.Go(func() {
			<-gate
			rep, err := rp.Run(context.Background(), time.Now().Add(-time.Hour), false)
			if err != nil {
				results <- "replay error " + err.Error()
				return
			}
			for _, e := range rep.Events {
				results <- fmt.Sprintf("%s replay %s", e.Customer, e.Result)
			}
		})
	}
	close(gate)
	wg.Wait()
	close(results)
	processed := map[string]int{}
	for res := range results {
		switch {
		case strings.Contains(res, `"result":"processed"`) || strings.HasSuffix(res, "replay processed"):
			processed[strings.Fields(res)[0]]++
		case strings.Contains(res, `200 {"received":true,"result":"duplicate"}`):
		default:
			t.Errorf("unexpected outcome: %s", res)
		}
	}
	for _, c := range customers {
		if processed[c] != 1 {
			t.Errorf("%s took effect %d times; want once", c, processed[c])
		}
		if n := d.Count("GET", "/v1/customers/"+c); n != 1 {
			t.Errorf("%s read from Stripe %d times; want once", c, n)
		}
		if want, got := a.stripeState(c), b.state(c); !want.SameAs(got) {
			t.Errorf("%s stored %+v; want %+v", c, got, want)
		}
	}
}

// Stripe failing while the events are paged: one 500 mid-list is retried
// (stripe-go) and the run goes on; a page that keeps failing ends the run
// with an error naming the page, after applying what was listed before
// it, and a second run applies the rest, none twice.
func TestReplayStripeFailuresWhilePaging(t *testing.T) {
	r := newRig(t, rigOptions{})
	base := time.Now().Add(-10 * time.Minute)
	for i := range 12 {
		r.lostEvent(fmt.Sprintf("evt_page_%02d", i), fmt.Sprintf("cus_page_%02d", i), base.Add(time.Duration(i)*time.Second))
	}
	list500 := testrig.Fault{Status: 500, Type: "api_error", Message: "An unknown error occurred", ShouldRetry: "true",
		Method: "GET", PathPrefix: "/v1/events"}

	t.Run("one 500 mid-list", func(t *testing.T) {
		rp := r.replayer(func(o *ReplayOptions) {
			o.PageSize = 5
			o.Progress = func(p ReplayProgress) {
				if p.Pages == 1 {
					r.double.FailNextWith(1, list500)
				}
			}
		})
		rep := mustReplay(t, rp, base.Add(6*time.Second), false) // evt_page_06 .. 11: two pages
		if rep.Pages != 2 || rep.Results[resultProcessed] != 6 {
			t.Errorf("replay through a 500 = %+v; want 2 pages, 6 processed", rep)
		}
	})
	t.Run("a page that keeps failing", func(t *testing.T) {
		rp := r.replayer(func(o *ReplayOptions) {
			o.PageSize = 5
			o.Progress = func(p ReplayProgress) {
				if p.Pages == 1 {
					r.double.FailNextWith(100, list500)
				}
			}
		})
		rep, err := rp.Run(context.Background(), base, false)
		r.double.Reset()
		if err == nil || !strings.Contains(err.Error(), "page 2, after evt_page_07") {
			t.Fatalf("replay with a failing page: err = %v; want one naming page 2 after evt_page_07", err)
		}
		// Page 1 held evt_page_11 .. 07, all applied by the first subtest.
		if rep.Pages != 1 || rep.Results[resultProcessed] != 0 || rep.Results[resultDuplicate] != 5 {
			t.Errorf("report of the failed run = %+v; want page 1 only, 5 duplicates", rep)
		}
		rerun := mustReplay(t, r.replayer(nil), base, false)
		if rerun.Results[resultProcessed] != 6 || rerun.Results[resultDuplicate] != 6 {
			t.Errorf("rerun = %+v; want the 6 older events processed, the 6 newer duplicates", rerun)
		}
	})
	for i := range 12 {
		c := fmt.Sprintf("cus_page_%02d", i)
		if n := r.double.Count("GET", "/v1/customers/"+c); n != 1 {
			t.Errorf("%s read from Stripe %d times; want once", c, n)
		}
		if r.state(c) == nil {
			t.Errorf("%s has no state after the replays", c)
		}
	}
	var failedLists int
	for _, req := range r.double.Requests() {
		if req.Path == "/v1/events" && req.Status == http.StatusInternalServerError {
			failedLists++
		}
	}
	if failedLists < 2 {
		t.Errorf("the double answered %d list requests with 500; want the injected ones", failedLists)
	}
}

// A dry run reports what it would apply, what is done and what is being
// processed right now, and changes nothing: no state, no ledger entry, no
// log entry, no Stripe read beyond the list.
func TestReplayDryRunChangesNothing(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.lostEvent("evt_dry_new", "cus_dry_new", time.Now().Add(-time.Minute))
	done := r.lostEvent("evt_dry_done", "cus_dry_done", time.Now().Add(-time.Minute))
	r.mustDeliver(done, resultProcessed)
	r.lostEvent("evt_dry_busy", "cus_dry_busy", time.Now().Add(-time.Minute))
	if state, _, err := r.ledger.Claim(context.Background(), "evt_dry_busy", time.Minute); err != nil || state != Claimed {
		t.Fatalf("claim = %v %v", state, err)
	}
	logBefore := len(r.deliveries(Filter{}))
	requestsBefore := len(r.double.Requests())

	rep := mustReplay(t, r.replayer(nil), time.Now().Add(-time.Hour), true)
	got := map[string]string{}
	for _, e := range rep.Events {
		got[e.Event] = e.Result
	}
	if !rep.DryRun || got["evt_dry_new"] != resultWouldApply || got["evt_dry_busy"] != resultBusy ||
		rep.Results[resultDuplicate] != 1 || len(rep.Events) != 2 {
		t.Errorf("dry run = %+v; want evt_dry_new would_apply, evt_dry_busy busy, evt_dry_done duplicate", rep)
	}
	if r.state("cus_dry_new") != nil || r.state("cus_dry_busy") != nil {
		t.Error("a dry run stored state")
	}
	if s, _ := r.ledger.State(context.Background(), "evt_dry_new"); s != "" {
		t.Errorf("ledger for evt_dry_new after a dry run = %q; want nothing", s)
	}
	if n := len(r.deliveries(Filter{})); n != logBefore {
		t.Errorf("a dry run wrote %d delivery log entries", n-logBefore)
	}
	for _, req := range r.double.Requests()[requestsBefore:] {
		if req.Path != "/v1/events" {
			t.Errorf("a dry run called Stripe: %s %s", req.Method, req.Path)
		}
	}
	if got := testutil.ToFloat64(r.metrics.WebhookReplayed.WithLabelValues(resultDuplicate)); got != 0 {
		t.Errorf("a dry run counted %v in tollgate_webhook_replayed_total", got)
	}
}

// The background replay (gating.replay_interval) heals a lost webhook on
// its own, on one replica at a time, and records where the next run lists
// from; it stops with its context.
func TestBackgroundReplay(t *testing.T) {
	a, b, d := twoReplicas(t)
	a.lostEvent("evt_bg", "cus_bg", time.Now().Add(-time.Hour))
	mark := NewReplayMark(a.st.Client, a.st.Keys)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, rg := range []*rig{a, b} {
		rp := rg.replayer(nil)
		wg.Go(func() { rp.RunEvery(ctx, 100*time.Millisecond, mark) })
	}
	testrig.Eventually(t, "the background replay applies the lost event", func() bool {
		return a.state("cus_bg") != nil
	})
	testrig.Eventually(t, "the replay mark is set", func() bool {
		m, ok, err := mark.Get(context.Background())
		return err == nil && ok && m.After(time.Now().Add(-10*time.Minute))
	})
	cancel()
	wg.Wait()
	if n := d.Count("GET", "/v1/customers/cus_bg"); n != 1 {
		t.Errorf("cus_bg read from Stripe %d times; want once", n)
	}
	applied := testutil.ToFloat64(a.metrics.WebhookReplayed.WithLabelValues(resultProcessed)) +
		testutil.ToFloat64(b.metrics.WebhookReplayed.WithLabelValues(resultProcessed))
	if applied != 1 {
		t.Errorf("processed replays across both replicas = %v; want 1", applied)
	}
}
