package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/webhook"
)

// Shared by the store fault tests (storefaults_test.go, sentinel_test.go):
// three `tollgate serve` processes on one store, an upstream that bills one
// unit per answer, the recording Stripe double, and a record of every
// request the test sent.

const faultWebhookSecret = "whsec_store_faults_0123456789"

// fleet is the processes and what they talk to.
type fleet struct {
	t        *testing.T
	double   *testrig.StripeDouble
	ledger   *timedLedger
	replicas []*binary
	record   *record
}

// startFleet runs three replicas with the given redis: block (YAML flow
// mapping) and gating.max_staleness, once every customer in paying is
// known to Stripe with an active subscription, and returns when each
// replica is ready and has served each of them.
func startFleet(t *testing.T, redisYAML string, maxStale time.Duration, paying []string) *fleet {
	t.Helper()
	f := &fleet{t: t, double: testrig.NewStripeDouble(t), ledger: &timedLedger{}, record: &record{}}
	for _, c := range paying {
		f.subscribe(c, stripe.SubscriptionStatusActive)
	}
	app := httptest.NewServer(f.ledger.handler())
	t.Cleanup(app.Close)
	cfgPath := writeFaultConfig(t, app.URL, redisYAML, f.double.URL(), maxStale)
	bin := buildBinary(t)
	for range 3 {
		f.replicas = append(f.replicas, startTollgate(t, bin, cfgPath))
	}
	for i := range f.replicas {
		testrig.WaitFor(t, 20*time.Second, func() error { return f.ready(i) })
		for _, c := range paying {
			testrig.WaitFor(t, 20*time.Second, func() error { return f.expect(i, c, http.StatusOK) })
		}
	}
	return f
}

func writeFaultConfig(t *testing.T, upstream, redisYAML, stripeURL string, maxStale time.Duration) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tollgate.yaml")
	yaml := fmt.Sprintf(`
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
upstream: %s
server: { drain_delay: 0s, shutdown_timeout: 10s }
redis: %s
stripe: { secret_key: %s, api_base: %q, timeout: 2s, max_network_retries: 0, webhook_secrets: [%s] }
auth: { jwt: { algorithms: [HS256], audience: [api], hmac_secret: %q } }
plans: { pro: { prices: [price_pro] } }
gating: { max_staleness: %s }
routes: [ { path: /api/**, require: { subscription: true }, meter: calls } ]
billing: { prefix: "" }
webhook: { process_timeout: 5s }
metering:
  flush_interval: 200ms
  window: 1s
  lease_ttl: 1s
  rate_limit: 1000
  meters: { calls: { event_name: api_calls } }
`, upstream, redisYAML, testrig.StripeTestKey, stripeURL, faultWebhookSecret, meterTestSecret, maxStale)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// subscribe puts the customer and one subscription on price_pro in the
// Stripe double.
func (f *fleet) subscribe(customer string, status stripe.SubscriptionStatus) {
	f.double.PutCustomer(&stripe.Customer{ID: customer})
	f.double.PutSubscription(&stripe.Subscription{ID: "sub_" + customer, Customer: &stripe.Customer{ID: customer},
		Status: status, CurrentPeriodStart: time.Now().Add(-time.Hour).Unix(), CurrentPeriodEnd: time.Now().Add(24 * time.Hour).Unix(),
		Items: &stripe.SubscriptionItemList{Data: []*stripe.SubscriptionItem{{ID: "si_" + customer, Price: &stripe.Price{ID: "price_pro"}}}}})
}

// outcome is one request the test sent and what came back.
type outcome struct {
	replica    int
	customer   string
	sent, recv time.Time
	status     int    // 0: no answer
	code       string // error.code of a denial
}

// record keeps every outcome.
type record struct {
	mu   sync.Mutex
	list []outcome
}

func (r *record) add(o outcome) {
	r.mu.Lock()
	r.list = append(r.list, o)
	r.mu.Unlock()
}

// where returns the outcomes that match keep, in order of sending.
func (r *record) where(keep func(outcome) bool) []outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []outcome
	for _, o := range r.list {
		if keep(o) {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].sent.Before(out[j].sent) })
	return out
}

var faultClient = &http.Client{Timeout: 5 * time.Second}

// call sends one metered request for customer to replica i and records it.
func (f *fleet) call(i int, customer string) outcome {
	o := outcome{replica: i, customer: customer, sent: time.Now()}
	req, _ := http.NewRequest("GET", "http://"+f.replicas[i].proxyAddr+"/api/x?u=1", nil)
	req.Header.Set("Authorization", bearer(f.t, customer))
	resp, err := faultClient.Do(req)
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		o.status = resp.StatusCode
		var denial struct {
			Error struct{ Code string } `json:"error"`
		}
		if json.Unmarshal(body, &denial) == nil {
			o.code = denial.Error.Code
		}
	}
	o.recv = time.Now()
	f.record.add(o)
	return o
}

// expect is a condition: replica i answers customer with status.
func (f *fleet) expect(i int, customer string, status int) error {
	if o := f.call(i, customer); o.status != status {
		return fmt.Errorf("replica %d answered %s with %d %s; want %d", i, customer, o.status, o.code, status)
	}
	return nil
}

// ready is a condition: replica i's /readyz answers 200.
func (f *fleet) ready(i int) error {
	resp, err := faultClient.Get("http://" + f.replicas[i].adminAddr + "/readyz")
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("replica %d /readyz = %d %s", i, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

// traffic sends requests for customers to every replica, one after
// another with a short pause, until stop is closed.
func (f *fleet) traffic(customers []string, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i := range f.replicas {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond): // pacing, not waiting for anything
				}
				f.call(i, customers[(n+i)%len(customers)])
			}
		})
	}
	return &wg
}

// postWebhook signs and posts one event to replica i until it answers 200
// (Stripe retries a failed delivery; this retries every 100 ms for up to
// 40 s), and returns when it did.
func (f *fleet) postWebhook(i int, id, typ string, object map[string]any) time.Time {
	f.t.Helper()
	body, err := webhook.NewEvent(id, typ, time.Now(), object)
	if err != nil {
		f.t.Fatal(err)
	}
	deadline := time.Now().Add(40 * time.Second)
	for {
		req, _ := http.NewRequest("POST", "http://"+f.replicas[i].proxyAddr+"/_tollgate/stripe/webhook", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		req.Header.Set("Stripe-Signature", webhook.SignatureHeader(body, faultWebhookSecret, time.Now()))
		resp, err := faultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Now()
			}
			err = fmt.Errorf("%d %s", resp.StatusCode, b)
		}
		if time.Now().After(deadline) {
			f.t.Errorf("webhook %s at replica %d never got 200: %v", id, i, err)
			return time.Time{}
		}
		time.Sleep(100 * time.Millisecond) // Stripe's retry, much sped up
	}
}

// firstTimes polls cond for every replica at once, every 5 ms, and returns
// when each first held (the zero time if not within timeout).
func (f *fleet) firstTimes(timeout time.Duration, cond func(i int) error) []time.Time {
	out := make([]time.Time, len(f.replicas))
	var wg sync.WaitGroup
	for i := range f.replicas {
		wg.Go(func() {
			deadline := time.Now().Add(timeout)
			for time.Now().Before(deadline) {
				if cond(i) == nil {
					out[i] = time.Now()
					return
				}
				time.Sleep(5 * time.Millisecond) // a polling interval; the deadline is the wait
			}
		})
	}
	wg.Wait()
	return out
}

// meteredExactly waits until Stripe holds exactly the units the upstream
// served for every customer, and no meter event identifier twice.
func (f *fleet) meteredExactly(customers []string) {
	f.t.Helper()
	total := int64(0)
	defer func() { f.t.Logf("%d units served and reported once", total) }()
	for _, c := range customers {
		served := f.ledger.sum(c, time.Time{})
		total += served
		testrig.WaitFor(f.t, 40*time.Second, func() error {
			if got := reportedUnits(f.double, c); got != served {
				return fmt.Errorf("%s: %d units reported to Stripe, %d served", c, got, served)
			}
			return nil
		})
	}
	checkUnique(f.t, f.double)
}
