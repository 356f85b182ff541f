package main

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// Issue 11, SPEC "Store faults", with real processes: three `tollgate
// serve` on one redis-server (AOF, appendfsync always), Redis SIGKILLed
// while traffic runs, more than max_staleness after the replicas loaded
// their customers, and restarted on its AOF 7 s later (as measured in the
// issue; past max_staleness, and long enough for a growing reconnect
// backoff to show).
//
//   - During the outage, customers the replicas know keep their last-known
//     decisions for max_staleness after the feed last proved them current,
//     which is at most one probe (250 ms) before the kill: every request
//     answered within max_staleness - 1 s of the kill is served (the 1 s
//     covers that probe and scheduling on a loaded machine), and every
//     request sent max_staleness after the kill or later is refused with
//     503 entitlements_unavailable (no margin: no proof can postdate the
//     kill). A customer first seen during the outage gets 503, never 402.
//   - From when redis-server answers PING again (when Restart returns),
//     /readyz is 200 and known customers are served again within 1 s on
//     every replica; a webhook that got 200 is enforced on every replica
//     within 1 s of its 200, and never undone.
//   - Metering loses and doubles nothing (every unit served is reported to
//     Stripe once).
func TestRedisSIGKILLWithThreeReplicas(t *testing.T) {
	rd := testrig.StartRedis(t)
	if rd.Embedded() {
		t.Skip("needs a redis-server process to kill")
	}
	const maxStale, outage = 4 * time.Second, 7 * time.Second
	paying := []string{"cus_Ka", "cus_Kb", "cus_Kc", "cus_Kd"}
	const changed = "cus_Ka" // canceled by webhook once Redis is back
	f := startFleet(t, fmt.Sprintf(`{ url: %q, prefix: "tgf:" }`, rd.URL()), maxStale, paying)
	for _, c := range []string{"cus_Na", "cus_Nb", "cus_Nc"} {
		f.subscribe(c, stripe.SubscriptionStatusActive) // paying, but not seen before the outage
	}

	stop := make(chan struct{})
	wg := f.traffic(paying, stop)
	// Traffic runs, and the customers' loads grow older than max_staleness:
	// a timeline, not a wait for a condition.
	time.Sleep(maxStale + time.Second)
	killStart := time.Now()
	rd.Kill()
	killed := time.Now()
	for i, c := range []string{"cus_Na", "cus_Nb", "cus_Nc"} {
		f.call(i, c)
	}
	time.Sleep(time.Until(killed.Add(outage)))
	restartStart := time.Now()
	rd.Restart()
	back := time.Now()

	ready := make(chan []time.Time, 1)
	go func() { ready <- f.firstTimes(10*time.Second, f.ready) }()
	served := f.firstTimes(10*time.Second, func(i int) error { return f.expect(i, "cus_Kb", http.StatusOK) })
	f.subscribe(changed, stripe.SubscriptionStatusCanceled)
	acked := f.postWebhook(0, "evt_fault_cancel", "customer.subscription.deleted",
		map[string]any{"id": "sub_" + changed, "object": "subscription", "customer": changed, "status": "canceled"})
	enforced := f.firstTimes(10*time.Second, func(i int) error { return f.expect(i, changed, http.StatusPaymentRequired) })
	readyAt := <-ready
	time.Sleep(time.Second) // traffic on recovered replicas: a timeline
	close(stop)
	wg.Wait()

	t.Logf("outage: killed at +0, restarted at +%v, PING answered at +%v", restartStart.Sub(killed).Round(time.Millisecond),
		back.Sub(killed).Round(time.Millisecond))
	for i := range f.replicas {
		t.Logf("replica %d: /readyz 200 after %v, known customer served after %v; webhook acked %v after PING, enforced %v after its 200",
			i, since(back, readyAt[i]), since(back, served[i]), acked.Sub(back).Round(time.Millisecond), since(acked, enforced[i]))
		within(t, fmt.Sprintf("replica %d: /readyz 200", i), back, readyAt[i], time.Second)
		within(t, fmt.Sprintf("replica %d: a known customer served", i), back, served[i], time.Second)
		within(t, fmt.Sprintf("replica %d: the webhook's cancellation enforced", i), acked, enforced[i], time.Second)
	}
	checkOutage(t, f, paying, killStart, killed, restartStart, maxStale)
	checkAfterRecovery(t, f, paying, changed, back, enforced)
	f.meteredExactly(paying)
}

// checkOutage asserts the decisions made while Redis was down.
func checkOutage(t *testing.T, f *fleet, paying []string, killStart, killed, restartStart time.Time, maxStale time.Duration) {
	t.Helper()
	known := map[string]bool{}
	for _, c := range paying {
		known[c] = true
	}
	servedUntil := killStart.Add(maxStale - time.Second)
	closedFrom := killed.Add(maxStale)
	for i := range f.replicas {
		var inWindow, failedClosed int
		for _, o := range f.record.where(func(o outcome) bool { return o.replica == i && !o.sent.Before(killed) && o.recv.Before(restartStart) }) {
			switch {
			case !known[o.customer]:
				if o.status != http.StatusServiceUnavailable || o.code != "entitlements_unavailable" {
					t.Errorf("replica %d: %s, first seen during the outage, got %d %s; want 503 entitlements_unavailable", i, o.customer, o.status, o.code)
				}
			case !o.recv.After(servedUntil):
				inWindow++
				if o.status != http.StatusOK {
					t.Errorf("replica %d: %s at +%v of the outage got %d %s; want 200 on last-known state within max_staleness %v",
						i, o.customer, o.sent.Sub(killed).Round(time.Millisecond), o.status, o.code, maxStale)
				}
			case !o.sent.Before(closedFrom):
				failedClosed++
				if o.status != http.StatusServiceUnavailable || o.code != "entitlements_unavailable" {
					t.Errorf("replica %d: %s at +%v of the outage got %d %s; want 503 entitlements_unavailable past max_staleness",
						i, o.customer, o.sent.Sub(killed).Round(time.Millisecond), o.status, o.code)
				}
			}
		}
		t.Logf("replica %d: %d requests served on last-known state, %d refused past max_staleness", i, inWindow, failedClosed)
		if inWindow == 0 || failedClosed == 0 {
			t.Errorf("replica %d: %d requests inside max_staleness, %d past it; want some of each (test timeline)", i, inWindow, failedClosed)
		}
	}
}

// checkAfterRecovery asserts that once recovered every replica served the
// paying customers, and never again served the canceled one after it
// enforced the cancellation.
func checkAfterRecovery(t *testing.T, f *fleet, paying []string, changed string, back time.Time, enforced []time.Time) {
	t.Helper()
	settled := back.Add(time.Second)
	for i := range f.replicas {
		for _, o := range f.record.where(func(o outcome) bool { return o.replica == i && o.sent.After(settled) }) {
			if o.customer == changed {
				if !enforced[i].IsZero() && o.sent.After(enforced[i]) && o.status == http.StatusOK {
					t.Errorf("replica %d served %s again %v after enforcing its cancellation", i, changed, o.sent.Sub(enforced[i]))
				}
				continue
			}
			if o.status != http.StatusOK {
				t.Errorf("replica %d: %s at +%v after recovery got %d %s; want 200", i, o.customer, o.sent.Sub(back).Round(time.Millisecond), o.status, o.code)
			}
		}
	}
}

// within fails the test unless at is set and no later than bound after from.
func within(t *testing.T, what string, from, at time.Time, bound time.Duration) {
	t.Helper()
	if at.IsZero() || at.Sub(from) > bound {
		t.Errorf("%s after %v; want within %v", what, since(from, at), bound)
	}
}

// since is at - from, rounded, or "never" for a zero at.
func since(from, at time.Time) string {
	if at.IsZero() {
		return "never"
	}
	return at.Sub(from).Round(time.Millisecond).String()
}
