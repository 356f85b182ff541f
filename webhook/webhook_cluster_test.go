package webhook

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// The event ledger, the whole endpoint and the forwarding queue on a real
// 3-node Redis Cluster (redis.addrs). One cluster serves every subtest;
// each has its own key prefix, and each replica its own cluster client.
func TestWebhookOnRedisCluster(t *testing.T) {
	c := testrig.StartRedisCluster(t, 3)
	var prefixes atomic.Int64
	open := func(t *testing.T, prefix string) *store.Store {
		t.Helper()
		cfg := config.Redis{Addrs: c.Addrs(), Prefix: prefix, DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second}
		s, err := store.Open(cfg, quiet)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if _, ok := s.Client.(*redis.ClusterClient); !ok {
			t.Fatalf("store.Open with %d addrs = %T; want a cluster client", len(cfg.Addrs), s.Client)
		}
		return s
	}
	// replicas opens n stores (replicas) on one fresh prefix.
	replicas := func(t *testing.T, n int) []*store.Store {
		prefix := fmt.Sprintf("whc%d:", prefixes.Add(1))
		var out []*store.Store
		for range n {
			out = append(out, open(t, prefix))
		}
		return out
	}
	t.Run("LedgerExactlyOnce", func(t *testing.T) { testClusterLedger(t, replicas(t, 2)) })
	t.Run("ConcurrentDeliveriesTakeEffectOnce", func(t *testing.T) { testClusterDeliveries(t, replicas(t, 2)) })
	t.Run("ForwardingQueue", func(t *testing.T) { testClusterQueue(t, replicas(t, 2)) })
}

// Claim, Release and Done on two replicas' ledgers, for events whose keys
// live on every node.
func testClusterLedger(t *testing.T, st []*store.Store) {
	ctx := context.Background()
	a, b := NewRedisLedger(st[0].Client, st[0].Keys), NewRedisLedger(st[1].Client, st[1].Keys)
	nodes := map[string]bool{}
	for i := range 6 {
		ev := fmt.Sprintf("evt_cluster_ledger_%d", i)
		node, err := st[0].Client.(*redis.ClusterClient).MasterForKey(ctx, a.key(ev))
		if err != nil {
			t.Fatal(err)
		}
		nodes[node.Options().Addr] = true
		state, token, err := a.Claim(ctx, ev, time.Minute)
		if err != nil || state != Claimed {
			t.Fatalf("%s: first claim = %v, %v; want Claimed", ev, state, err)
		}
		for _, step := range []struct {
			name string
			do   func() error
			want ClaimState
		}{
			{"claimed elsewhere", func() error { return nil }, Busy},
			{"released with another token", func() error { return b.Release(ctx, ev, "not-the-token") }, Busy},
			{"released by its holder", func() error { return a.Release(ctx, ev, token) }, Claimed},
			{"done", func() error { return b.Done(ctx, ev, time.Hour) }, Done},
		} {
			if err := step.do(); err != nil {
				t.Fatalf("%s: %s: %v", ev, step.name, err)
			}
			got, _, err := b.Claim(ctx, ev, time.Minute)
			if err != nil || got != step.want {
				t.Errorf("%s: after %s, claim = %v, %v; want %v", ev, step.name, got, err, step.want)
			}
		}
		if got, err := a.State(ctx, ev); err != nil || got != "done" {
			t.Errorf("%s: State = %q, %v; want done", ev, got, err)
		}
	}
	if len(nodes) != 3 {
		t.Errorf("the events' ledger keys live on %d nodes; want all 3 (test setup)", len(nodes))
	}
}

// The same events delivered many times at once to two replicas: each takes
// effect once (one processed, the rest duplicate, Stripe read once per
// customer), and the state stored is Stripe's.
func testClusterDeliveries(t *testing.T, st []*store.Store) {
	d := testrig.NewStripeDouble(t)
	d.Delay(20 * time.Millisecond) // processing takes a while: the deliveries overlap
	a := newRig(t, rigOptions{redis: st[0], double: d})
	b := newRig(t, rigOptions{redis: st[1], double: d})
	customers := []string{"cus_cl_a", "cus_cl_b", "cus_cl_c", "cus_cl_d"}
	for _, c := range customers {
		d.PutCustomer(&stripe.Customer{ID: c})
		d.PutSubscription(sub("sub_"+c, c, "active", "price_pro", time.Now().Add(time.Hour)))
	}
	const each = 6
	results := make(chan string, each*len(customers))
	var wg sync.WaitGroup
	for _, c := range customers {
		body := subEvent(t, "evt_"+c, "customer.subscription.updated", c, "", time.Now())
		sig := SignatureHeader(body, secret, time.Now())
		for i := range each {
			target := []string{a.url, b.url}[i%2]
			wg.Go(func() {
				code, resp := post(t, target, body, sig, "")
				results <- fmt.Sprint(c, " ", code, " ", resp)
			})
		}
	}
	wg.Wait()
	close(results)
	count := map[string]int{}
	for r := range results {
		c, rest, _ := strings.Cut(r, " ")
		switch {
		case strings.HasPrefix(rest, `200 {"received":true,"result":"processed"}`):
			count[c+" processed"]++
		case strings.HasPrefix(rest, `200 {"received":true,"result":"duplicate"}`):
			count[c+" duplicate"]++
		default:
			t.Errorf("unexpected answer for %s: %s", c, rest)
		}
	}
	for _, c := range customers {
		if count[c+" processed"] != 1 || count[c+" duplicate"] != each-1 {
			t.Errorf("%s: answers %d processed, %d duplicate; want 1 and %d", c, count[c+" processed"], count[c+" duplicate"], each-1)
		}
		if got := d.Count("GET", "/v1/customers/"+c); got != 1 {
			t.Errorf("%s read from Stripe %d times; want once", c, got)
		}
		if want, got := a.stripeState(c), b.state(c); !want.SameAs(got) {
			t.Errorf("%s stored %+v; want %+v", c, got, want)
		}
	}
	stored, err := b.store.Customers(context.Background())
	if err != nil || len(stored) != len(customers) {
		t.Errorf("Customers = %v, %v; want the %d customers", stored, err, len(customers))
	}
	// Both replicas wrote to the one global delivery log, whatever node
	// each customer's keys live on.
	for _, c := range customers {
		got := a.deliveries(Filter{Customer: c})
		n := map[string]int{}
		for _, d := range got {
			n[d.Result]++
		}
		if n[resultProcessed] != 1 || n[resultDuplicate] != each-1 || len(got) != each {
			t.Errorf("%s: delivery log %v; want 1 processed and %d duplicate", c, n, each-1)
		}
	}
}

// Enqueue (twice: idempotent), delivery by one replica's forwarder, retries
// and the dead-letter list of another: every queue key shares the
// {webhook-forward} slot, so the scripts run on Cluster.
func testClusterQueue(t *testing.T, st []*store.Store) {
	ctx := context.Background()
	app := newApp(t)
	q := NewQueue(st[0].Client, st[0].Keys)
	ok := subEvent(t, "evt_cl_fwd", "customer.subscription.updated", "cus_fwd", "active", time.Now())
	for range 2 {
		if err := q.Enqueue(ctx, "evt_cl_fwd", "customer.subscription.updated", ok); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := q.Pending(ctx); err != nil || n != 1 {
		t.Fatalf("pending after enqueueing one event twice = %d, %v; want 1", n, err)
	}
	stop := runForwarder(t, ForwarderOptions{Queue: NewQueue(st[1].Client, st[1].Keys), URL: app.srv.URL})
	testrig.WaitFor(t, 5*time.Second, func() error {
		if got, _ := app.received("evt_cl_fwd"); !bytes.Equal(got, ok) {
			return fmt.Errorf("app has not received the event")
		}
		if n, err := q.Pending(ctx); err != nil || n != 0 {
			return fmt.Errorf("pending = %d, %v", n, err)
		}
		return nil
	})
	stop()

	failing := newApp(t)
	failing.answer = http.StatusInternalServerError
	bad := subEvent(t, "evt_cl_dead", "customer.subscription.updated", "cus_fwd", "active", time.Now())
	if err := q.Enqueue(ctx, "evt_cl_dead", "customer.subscription.updated", bad); err != nil {
		t.Fatal(err)
	}
	runForwarder(t, ForwarderOptions{Queue: NewQueue(st[1].Client, st[1].Keys), URL: failing.srv.URL,
		MaxAttempts: 3, MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	testrig.WaitFor(t, 5*time.Second, func() error {
		dead, err := q.DeadLetters(ctx)
		if err != nil || len(dead) != 1 || dead[0].ID != "evt_cl_dead" || dead[0].Attempts != 3 || !bytes.Equal(dead[0].Body, bad) {
			return fmt.Errorf("dead letters = %+v, %v; want evt_cl_dead after 3 attempts", dead, err)
		}
		return nil
	})
	if _, queued, err := q.Lookup(ctx, "evt_cl_dead"); err != nil || queued {
		t.Errorf("Lookup of a dead-lettered event = queued %v, %v; want not queued", queued, err)
	}
}
