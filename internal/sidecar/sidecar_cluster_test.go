package sidecar

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/meter"
)

// Two replicas whose config says redis.addrs = a real 3-node Redis
// Cluster, end to end: webhooks change customers' state, both replicas gate
// on it (the change feed is pub/sub on Cluster), a plan limit is enforced,
// metered requests are reported to Stripe exactly once, and `tollgate
// usage` reads the result. The customers' keys spread over every node.
func TestSidecarOnRedisCluster(t *testing.T) {
	c := testrig.StartRedisCluster(t, 3)
	d := testrig.NewStripeDouble(t)
	ledger := &servedLedger{units: make(map[string]int64)}
	app := httptest.NewServer(ledger.handler())
	defer app.Close()
	cfg := webhookConfig(t, app.URL, "", d.URL())
	cfg.Redis.Addrs, cfg.Redis.Prefix = c.Addrs(), "sc:"
	cfg.Plans = map[string]*config.Plan{
		"pro":   {Prices: []string{"price_pro"}, Limits: map[string]int64{"calls": 1 << 40}},
		"small": {Prices: []string{"price_small"}, Limits: map[string]int64{"calls": 5}},
	}
	cfg.Routes = []*config.Route{{Path: "/api/**", Require: config.Require{Subscription: true}, Meter: "calls"}}
	cfg.Metering.FlushInterval, cfg.Metering.Window, cfg.Metering.LeaseTTL = 50*time.Millisecond, time.Second, time.Second
	cfg.Metering.Meters = map[string]*config.Meter{"calls": {EventName: "api_calls"}}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("cluster config invalid: %v", err)
	}
	a, b := start(t, cfg), start(t, cfg)
	replicas := []*running{a, b}

	customers := map[string]string{"cus_SC0": "price_pro", "cus_SC1": "price_pro", "cus_SC2": "price_pro",
		"cus_SC3": "price_pro", "cus_SC4": "price_pro", "cus_SCq": "price_small"}
	tokens := map[string]string{}
	for cus := range customers {
		d.PutCustomer(&stripe.Customer{ID: cus})
		tokens[cus] = customerToken(t, cfg.Auth.JWT.HMACSecret, cus)
		for i, r := range replicas {
			if code := callUnits(t, r, tokens[cus], 0); code != http.StatusPaymentRequired {
				t.Fatalf("%s on replica %d before subscribing = %d; want 402", cus, i, code)
			}
		}
	}

	// 1. Subscriptions arrive by webhook, at either replica; both enforce them.
	i := 0
	for cus, price := range customers {
		d.PutSubscription(&stripe.Subscription{ID: "sub_" + cus, Customer: &stripe.Customer{ID: cus}, Status: "active",
			CurrentPeriodStart: time.Now().Add(-time.Hour).Unix(), CurrentPeriodEnd: time.Now().Add(time.Hour).Unix(),
			Items: &stripe.SubscriptionItemList{Data: []*stripe.SubscriptionItem{{ID: "si_" + cus, Price: &stripe.Price{ID: price}}}}})
		body := newEvent(t, "evt_created_"+cus, "customer.subscription.created",
			map[string]any{"id": "sub_" + cus, "object": "subscription", "customer": cus, "status": "incomplete"})
		if code, resp := postEvent(t, replicas[i%2], body); code != 200 {
			t.Fatalf("webhook for %s = %d %s", cus, code, resp)
		}
		i++
	}
	for cus := range customers {
		for i, r := range replicas {
			testrig.Eventually(t, fmt.Sprintf("replica %d to serve %s", i, cus), func() bool { return callUnits(t, r, tokens[cus], 0) == 200 })
		}
	}

	// 2. Metered requests on both replicas; the small plan runs into its limit.
	for n := range 60 {
		cus := fmt.Sprintf("cus_SC%d", n%5)
		if code := callUnits(t, replicas[n%2], tokens[cus], int64(1+n%4)); code != 200 {
			t.Fatalf("metered request %d for %s = %d; want 200", n, cus, code)
		}
	}
	testrig.Eventually(t, "cus_SCq's quota of 5 to be enforced", func() bool {
		return callUnits(t, a, tokens["cus_SCq"], 1) == http.StatusTooManyRequests
	})
	if served := ledger.snapshot()["cus_SCq"]; served != 5 {
		t.Errorf("cus_SCq was served %d units under a limit of 5; want exactly 5", served)
	}

	// 3. A cancellation by webhook at one replica is enforced by the other.
	d.PutSubscription(&stripe.Subscription{ID: "sub_cus_SC0", Customer: &stripe.Customer{ID: "cus_SC0"}, Status: "canceled",
		CurrentPeriodEnd: time.Now().Add(time.Hour).Unix(),
		Items:            &stripe.SubscriptionItemList{Data: []*stripe.SubscriptionItem{{ID: "si_cus_SC0", Price: &stripe.Price{ID: "price_pro"}}}}})
	body := newEvent(t, "evt_deleted_cus_SC0", "customer.subscription.deleted",
		map[string]any{"id": "sub_cus_SC0", "object": "subscription", "customer": "cus_SC0", "status": "canceled"})
	if code, resp := postEvent(t, b, body); code != 200 {
		t.Fatalf("cancellation webhook = %d %s", code, resp)
	}
	testrig.Eventually(t, "replica a to enforce the cancellation", func() bool {
		return callUnits(t, a, tokens["cus_SC0"], 0) == http.StatusPaymentRequired
	})

	// 4. Every unit served is reported once, and `tollgate usage` agrees.
	served := ledger.snapshot()
	waitReportedEqualsServed(t, d, served)
	checkIdentifiersUnique(t, d)
	admin := c.Client()
	keys := store.Keys{Prefix: cfg.Redis.Prefix}
	testrig.WaitFor(t, 10*time.Second, func() error {
		u, err := meter.ReadUsage(context.Background(), admin, keys)
		if err != nil {
			return err
		}
		for _, row := range u.Rows {
			if row.Reported != served[row.Customer] || row.Pending != 0 || row.Parked != 0 {
				return fmt.Errorf("usage row %+v; want %d reported, nothing pending or parked", row, served[row.Customer])
			}
		}
		if len(u.Rows) != len(customers) {
			return fmt.Errorf("usage has %d rows; want %d", len(u.Rows), len(customers))
		}
		return nil
	})
	nodes := map[string]bool{}
	for cus := range customers {
		n, err := admin.MasterForKey(context.Background(), keys.Customer(cus, "state"))
		if err != nil {
			t.Fatal(err)
		}
		nodes[n.Options().Addr] = true
	}
	t.Logf("%d customers on %d nodes; %d meter events, %d Stripe requests", len(customers), len(nodes),
		len(d.MeterEvents()), len(d.Requests()))
	if len(nodes) < 2 {
		t.Errorf("the customers' state lives on %d node(s); want several", len(nodes))
	}
}

// callUnits asks a replica for /api/x, the app answering with
// X-Tollgate-Usage: units; it returns the status.
func callUnits(t *testing.T, r *running, token string, units int64) int {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+r.sc.ProxyAddr()+"/api/x?u="+strconv.FormatInt(units, 10), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
