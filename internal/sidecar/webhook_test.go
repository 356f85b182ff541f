package sidecar

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stripe/stripe-go/v76"
	stripewebhook "github.com/stripe/stripe-go/v76/webhook"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/proxy/auth"
	"github.com/tollgate-dev/tollgate/webhook"
)

const webhookSecret = "whsec_sidecar_test"

// webhookConfig is a replica with the webhook on, re-reading from the
// double, gating /api/** on a subscription.
func webhookConfig(t *testing.T, upstream, redisURL, stripeURL string) *config.Config {
	t.Helper()
	cfg := testConfig(t, upstream)
	cfg.Redis.URL = redisURL
	cfg.Stripe.SecretKey, cfg.Stripe.TrustedPayloads = testrig.StripeTestKey, false
	cfg.Stripe.APIBase = stripeURL
	cfg.Stripe.WebhookSecrets = []string{webhookSecret}
	cfg.Gating.SyncInterval = 0
	cfg.Plans = map[string]*config.Plan{"pro": {Prices: []string{"price_pro"}}}
	cfg.Routes = []*config.Route{{Path: "/api/**", Require: config.Require{Subscription: true}}}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("webhook config invalid: %v", err)
	}
	return cfg
}

// postEvent delivers a signed event to a replica's webhook path, through
// its proxy listener.
func postEvent(t *testing.T, r *running, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+r.sc.ProxyAddr()+"/_tollgate/stripe/webhook", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Stripe-Signature", webhook.SignatureHeader(body, webhookSecret, time.Now()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func newEvent(t *testing.T, id, typ string, obj map[string]any) []byte {
	t.Helper()
	b, err := webhook.NewEvent(id, typ, time.Now(), obj)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// callAPI asks a replica for /api/x with a token; it returns the status.
func callAPI(t *testing.T, r *running, token string) int {
	t.Helper()
	code, _ := getAs(t, r, "/api/x", token)
	return code
}

// getAs GETs a path from a replica's proxy listener with a token and
// returns the status and the app's answer.
func getAs(t *testing.T, r *running, path, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+r.sc.ProxyAddr()+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The same event reaches two replicas at the same moment (Stripe may
// deliver an event twice): one processes it, the other waits for it and
// answers 200 duplicate; Stripe is read once; both replicas then enforce
// the new subscription.
func TestSameEventAtTwoReplicas(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	d := testrig.NewStripeDouble(t)
	d.PutCustomer(&stripe.Customer{ID: "cus_dup"})
	app := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer app.Close()
	a := start(t, webhookConfig(t, app.URL, rd.URL(), d.URL()))
	b := start(t, webhookConfig(t, app.URL, rd.URL(), d.URL()))
	token := customerToken(t, strings.Repeat("k", 32), "cus_dup")
	for _, r := range []*running{a, b} {
		if code := callAPI(t, r, token); code != http.StatusPaymentRequired {
			t.Fatalf("before the subscription: %d; want 402", code)
		}
	}
	d.PutSubscription(&stripe.Subscription{ID: "sub_dup", Customer: &stripe.Customer{ID: "cus_dup"}, Status: "active",
		CurrentPeriodEnd: time.Now().Add(time.Hour).Unix(),
		Items:            &stripe.SubscriptionItemList{Data: []*stripe.SubscriptionItem{{ID: "si_1", Price: &stripe.Price{ID: "price_pro"}}}}})
	d.Delay(30 * time.Millisecond) // each Stripe read takes a while: the deliveries overlap
	reads := d.Count("GET", "/v1/customers/cus_dup")
	body := newEvent(t, "evt_two_replicas", "customer.subscription.created",
		map[string]any{"id": "sub_dup", "object": "subscription", "customer": "cus_dup", "status": "incomplete"})
	answers := make([]string, 2)
	var wg sync.WaitGroup
	for i, r := range []*running{a, b} {
		wg.Go(func() {
			code, resp := postEvent(t, r, body)
			answers[i] = fmt.Sprint(code, " ", resp)
		})
	}
	wg.Wait()
	joined := strings.Join(answers, " | ")
	if !strings.Contains(joined, `"result":"processed"`) || !strings.Contains(joined, `"result":"duplicate"`) ||
		!strings.HasPrefix(answers[0], "200") || !strings.HasPrefix(answers[1], "200") {
		t.Errorf("answers = %s; want one 200 processed and one 200 duplicate", joined)
	}
	if n := d.Count("GET", "/v1/customers/cus_dup") - reads; n != 1 {
		t.Errorf("the two deliveries read the customer from Stripe %d times; want once", n)
	}
	for name, r := range map[string]*running{"a": a, "b": b} {
		testrig.Eventually(t, "replica "+name+" to enforce the subscription", func() bool { return callAPI(t, r, token) == 200 })
	}
}

// checkout.session.completed links the user to the customer: a token
// without a customer claim is then served as that customer by every
// replica (SPEC "Identity").
func TestCheckoutLinksUserOnEveryReplica(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	d := testrig.NewStripeDouble(t)
	d.PutCustomer(&stripe.Customer{ID: "cus_co"})
	d.PutSubscription(&stripe.Subscription{ID: "sub_co", Customer: &stripe.Customer{ID: "cus_co"}, Status: "trialing",
		TrialEnd: time.Now().Add(time.Hour).Unix(), CurrentPeriodEnd: time.Now().Add(time.Hour).Unix(),
		Items: &stripe.SubscriptionItemList{Data: []*stripe.SubscriptionItem{{ID: "si_1", Price: &stripe.Price{ID: "price_pro"}}}}})
	d.PutCheckoutSession(&stripe.CheckoutSession{ID: "cs_test_co", Customer: &stripe.Customer{ID: "cus_co"},
		ClientReferenceID: "user_co", Metadata: map[string]string{"user_id": "user_co"}, Subscription: &stripe.Subscription{ID: "sub_co"}})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("X-Tollgate-Customer"))
	}))
	defer app.Close()
	a := start(t, webhookConfig(t, app.URL, rd.URL(), d.URL()))
	b := start(t, webhookConfig(t, app.URL, rd.URL(), d.URL()))
	token, err := auth.SignHS256([]byte(strings.Repeat("k", 32)), jwt.MapClaims{
		"sub": "user_co", "aud": "api", "exp": time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	body := newEvent(t, "evt_checkout", "checkout.session.completed",
		map[string]any{"id": "cs_test_co", "object": "checkout.session"})
	if code, resp := postEvent(t, a, body); code != 200 {
		t.Fatalf("checkout event = %d %s", code, resp)
	}
	testrig.Eventually(t, "replica b to serve the linked user", func() bool { return callAPI(t, b, token) == 200 })
	st, err := b.sc.Customers.Get(t.Context(), "cus_co")
	if err != nil || !st.HadTrial || st.Source != "webhook:evt_checkout" {
		t.Errorf("stored state = %+v, %v; want HadTrial from the checkout's trialing subscription", st, err)
	}
}

// With webhook.forward_url set, the replica forwards verified events to
// the app, re-signed; an event whose first delivery failed is delivered by
// a replica started after the first one stopped (the queue is in Redis).
func TestForwardingSurvivesAReplicaRestart(t *testing.T) {
	rd := testrig.StartRedis(t)
	d := testrig.NewStripeDouble(t)
	var mu sync.Mutex
	failFirst := true
	got := map[string]bool{}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ev, err := stripewebhook.ConstructEvent(body, r.Header.Get("Stripe-Signature"), "whsec_app")
		mu.Lock()
		defer mu.Unlock()
		if err != nil || failFirst {
			failFirst = false
			http.Error(w, "not now", http.StatusServiceUnavailable)
			return
		}
		got[ev.ID] = true
	}))
	defer app.Close()
	cfg := webhookConfig(t, app.URL, rd.URL(), d.URL())
	cfg.Webhook.ForwardURL, cfg.Webhook.ForwardSecret = app.URL+"/stripe", "whsec_app"
	a := start(t, cfg)
	body := newEvent(t, "evt_forward", "charge.refunded", map[string]any{"id": "ch_1", "object": "charge"})
	if code, resp := postEvent(t, a, body); code != 200 || !strings.Contains(resp, "ignored") {
		t.Fatalf("unhandled event = %d %s; want 200 ignored (and forwarded)", code, resp)
	}
	queue := webhook.NewQueue(a.sc.Store.Client, a.sc.Store.Keys)
	testrig.Eventually(t, "the first forward attempt to fail and be rescheduled", func() bool {
		q, ok, err := queue.Lookup(t.Context(), "evt_forward")
		return err == nil && ok && q.Attempts == 1
	})
	a.stop()
	<-a.done
	a.done <- nil // for Cleanup

	start(t, cfg)
	testrig.Eventually(t, "the restarted replica to forward the event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return got["evt_forward"]
	})
}

// A webhook lost on the way is healed by the background replay
// (gating.replay_interval) of one of the replicas: both then serve the
// customer, the event took effect once, and the delivery log says it came
// from a replay.
func TestLostWebhookHealedByBackgroundReplay(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	d := testrig.NewStripeDouble(t)
	d.PutCustomer(&stripe.Customer{ID: "cus_replayed"})
	app := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer app.Close()
	var replicas []*running
	for range 2 {
		cfg := webhookConfig(t, app.URL, rd.URL(), d.URL())
		cfg.Gating.ReplayInterval = 200 * time.Millisecond // below the 1m config minimum, for the test
		replicas = append(replicas, start(t, cfg))
	}
	token := customerToken(t, strings.Repeat("k", 32), "cus_replayed")
	// Known and unsubscribed: the state is stored, so only an event (or a
	// sync, off here) changes it.
	if code := callAPI(t, replicas[0], token); code != http.StatusPaymentRequired {
		t.Fatalf("before the subscription: %d; want 402", code)
	}
	reads := d.Count("GET", "/v1/customers/cus_replayed")
	d.PutSubscription(&stripe.Subscription{ID: "sub_replayed", Customer: &stripe.Customer{ID: "cus_replayed"}, Status: "active",
		CurrentPeriodEnd: time.Now().Add(time.Hour).Unix(),
		Items:            &stripe.SubscriptionItemList{Data: []*stripe.SubscriptionItem{{ID: "si_1", Price: &stripe.Price{ID: "price_pro"}}}}})
	d.PutEventJSON(newEvent(t, "evt_never_delivered", "customer.subscription.created",
		map[string]any{"id": "sub_replayed", "object": "subscription", "customer": "cus_replayed"}))
	for i, r := range replicas {
		testrig.Eventually(t, fmt.Sprintf("replica %d to serve the customer", i), func() bool { return callAPI(t, r, token) == 200 })
	}
	if n := d.Count("GET", "/v1/customers/cus_replayed") - reads; n != 1 {
		t.Errorf("the replays read the customer from Stripe %d times; want once", n)
	}
	// The replay counts and logs the event just after storing its effect.
	log := webhook.NewDeliveryLog(replicas[0].sc.Store.Client, replicas[0].sc.Store.Keys, 0, 0)
	var got []webhook.Delivery
	testrig.WaitFor(t, 10*time.Second, func() error {
		var err error
		if got, err = log.List(t.Context(), webhook.Filter{Event: "evt_never_delivered"}); err != nil || len(got) == 0 {
			return fmt.Errorf("no log entry yet (%v)", err)
		}
		return nil
	})
	if len(got) != 1 || got[0].Source != webhook.SourceReplay || got[0].Result != "processed" {
		t.Errorf("delivery log = %+v; want one processed replay", got)
	}
	var applied float64
	for _, r := range replicas {
		applied += testutil.ToFloat64(r.sc.Metrics.WebhookReplayed.WithLabelValues("processed"))
	}
	if applied != 1 {
		t.Errorf("tollgate_webhook_replayed_total{result=processed} over both replicas = %v; want 1", applied)
	}
}
