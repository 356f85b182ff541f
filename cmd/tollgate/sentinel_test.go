package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// Issue 11, with real processes on Redis Sentinel (redis.addrs are the
// three sentinels, redis.master_name the master): three `tollgate serve`,
// metered traffic and a stream of webhooks, then the primary is SIGKILLed
// and Sentinel promotes the replica.
//
//   - Decisions for known customers never stop (the failover takes less
//     than max_staleness).
//   - From when every sentinel names the new primary: /readyz is 200, a
//     customer first seen then is served, and a webhook that got 200 is
//     enforced on every replica, each within 1 s.
//   - No counted unit is lost or reported twice, and every webhook that got
//     200 took effect, once.
//
// Replication to the replica is asynchronous (Redis's own limit): a write
// the primary acknowledged in the instant before it was killed and had not
// yet sent to the replica would be lost with it. That window is a fraction
// of a millisecond; this test does not try to hit it.
func TestSentinelFailoverWithThreeReplicas(t *testing.T) {
	s := testrig.StartRedisSentinel(t)
	paying := []string{"cus_Sa", "cus_Sb", "cus_Sc"}
	const changed = "cus_Sa" // canceled by webhook after the failover
	redisYAML := fmt.Sprintf(`{ addrs: [%s], master_name: %s, prefix: "tgs:" }`, strings.Join(s.Addrs(), ", "), s.MasterName())
	f := startFleet(t, redisYAML, 30*time.Second, paying)

	stop := make(chan struct{})
	wg := f.traffic(paying, stop)
	hooks := f.webhookStream(stop)
	time.Sleep(time.Second) // traffic and webhooks run: a timeline
	killedAt := time.Now()
	killed, promoted := s.KillPrimary()
	switched := time.Now()
	t.Logf("primary %s killed; %s promoted and named by every sentinel %v later", killed.Addr(), promoted.Addr(),
		switched.Sub(killedAt).Round(time.Millisecond))

	ready := make(chan []time.Time, 1)
	go func() { ready <- f.firstTimes(10*time.Second, f.ready) }()
	newcomers := []string{"cus_SNa", "cus_SNb", "cus_SNc"} // one per replica
	for _, c := range newcomers {
		f.subscribe(c, stripe.SubscriptionStatusActive)
	}
	firstSeen := f.firstTimes(10*time.Second, func(i int) error { return f.expect(i, newcomers[i], http.StatusOK) })
	canceling := time.Now()
	f.subscribe(changed, stripe.SubscriptionStatusCanceled)
	acked := f.postWebhook(1, "evt_sentinel_cancel", "customer.subscription.deleted",
		map[string]any{"id": "sub_" + changed, "object": "subscription", "customer": changed, "status": "canceled"})
	enforced := f.firstTimes(10*time.Second, func(i int) error { return f.expect(i, changed, http.StatusPaymentRequired) })
	readyAt := <-ready
	time.Sleep(time.Second) // more traffic and webhooks on the new primary: a timeline
	close(stop)
	wg.Wait()
	events := hooks.wait()

	for i := range f.replicas {
		t.Logf("replica %d after the switch: /readyz 200 after %v, a first-seen customer served after %v; "+
			"webhook acked %v after the switch, enforced %v after its 200",
			i, since(switched, readyAt[i]), since(switched, firstSeen[i]), acked.Sub(switched).Round(time.Millisecond), since(acked, enforced[i]))
		within(t, fmt.Sprintf("replica %d: /readyz 200", i), switched, readyAt[i], time.Second)
		within(t, fmt.Sprintf("replica %d: a first-seen customer served", i), switched, firstSeen[i], time.Second)
		within(t, fmt.Sprintf("replica %d: the webhook's cancellation enforced", i), acked, enforced[i], time.Second)
	}
	// The canceled customer counts for the requests answered before the
	// cancellation began: one answered later may already be the replica's
	// enforcement (the webhook takes effect before its 200 reaches the
	// test, and the Stripe double says canceled from canceling on).
	known := func(o outcome) bool {
		return slices.Contains(paying, o.customer) && (o.customer != changed || o.recv.Before(canceling))
	}
	for _, o := range f.record.where(known) {
		if o.status != http.StatusOK {
			t.Errorf("replica %d: %s at %v from the switch got %d %s; want 200 throughout the failover",
				o.replica, o.customer, o.sent.Sub(switched).Round(time.Millisecond), o.status, o.code)
		}
	}
	f.webhooksTookEffectOnce(events)
	f.meteredExactly(append(paying, newcomers...))
}

// webhooks is a stream of subscription events, one new customer each.
type webhooks struct {
	wg        sync.WaitGroup
	mu        sync.Mutex
	customers []string // whose event got 200
}

// webhookStream activates a new customer by webhook every 100 ms, at the
// replicas in turn, until stop is closed. Each event is posted until it
// gets 200, on its own, as Stripe retries each delivery on its own.
func (f *fleet) webhookStream(stop <-chan struct{}) *webhooks {
	h := &webhooks{}
	h.wg.Go(func() {
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond): // pacing
			}
			c := "cus_W" + strconv.Itoa(n)
			f.subscribe(c, stripe.SubscriptionStatusActive)
			h.wg.Go(func() {
				f.postWebhook(n%len(f.replicas), "evt_stream_"+strconv.Itoa(n), "customer.subscription.created",
					map[string]any{"id": "sub_" + c, "object": "subscription", "customer": c, "status": "active"})
				h.mu.Lock()
				h.customers = append(h.customers, c)
				h.mu.Unlock()
			})
		}
	})
	return h
}

// wait returns the customers whose event got 200, once the stream ended.
func (h *webhooks) wait() []string {
	h.wg.Wait()
	return h.customers
}

// webhooksTookEffectOnce checks that every acknowledged event's customer
// is served by every replica, and that the replicas together processed
// each event once (tollgate_webhook_events_total{result="processed"}).
func (f *fleet) webhooksTookEffectOnce(customers []string) {
	f.t.Helper()
	if len(customers) < 10 {
		f.t.Errorf("only %d webhooks went through; want a stream of them (test timeline)", len(customers))
	}
	for i := range f.replicas {
		for _, c := range customers {
			if err := f.expect(i, c, http.StatusOK); err != nil {
				f.t.Errorf("webhook effect lost: %v", err)
			}
		}
	}
	processed := 0
	for i := range f.replicas {
		processed += f.processedEvents(i)
	}
	f.t.Logf("%d webhooks acknowledged, %d processed in all", len(customers)+1, processed)
	// The stream's events and the one cancellation.
	if want := len(customers) + 1; processed != want {
		f.t.Errorf("the replicas processed %d webhook events; want %d, each once", processed, want)
	}
}

// processedEvents sums replica i's tollgate_webhook_events_total with
// result="processed".
func (f *fleet) processedEvents(i int) int {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+f.replicas[i].adminAddr+"/metrics", nil)
	resp, err := faultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "tollgate_webhook_events_total{") && strings.Contains(line, `result="processed"`) {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err != nil {
				f.t.Fatalf("metrics line %q: %v", line, err)
			}
			n += int(v)
		}
	}
	return n
}
