package webhook

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stripe/stripe-go/v76"
	"go.uber.org/goleak"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	secret    = "whsec_test_current"
	oldSecret = "whsec_test_rotated_out"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// rig is one webhook endpoint on a real Redis (or the embedded store) and
// the recording Stripe double.
type rig struct {
	t       testing.TB
	st      *store.Store
	store   *entitlements.RedisStore
	ledger  *RedisLedger
	queue   *Queue // with rigOptions.forward
	log     *DeliveryLog
	double  *testrig.StripeDouble
	metrics *metrics.Metrics
	h       *Handler
	url     string
}

type rigOptions struct {
	embedded bool // the embedded store instead of a redis-server
	trusted  bool // trusted payload mode: no Stripe
	forward  bool // queue every verified event for forwarding
	noLog    bool // no delivery log
	redis    *store.Store
	double   *testrig.StripeDouble
	mutate   func(*Options)
}

func newRig(t testing.TB, ro rigOptions) *rig {
	t.Helper()
	r := &rig{t: t, st: ro.redis, double: ro.double, metrics: metrics.New()}
	if r.st == nil {
		r.st = openStore(t, ro.embedded)
	}
	r.store = entitlements.NewRedisStore(r.st)
	r.ledger = NewRedisLedger(r.st.Client, r.st.Keys)
	o := Options{Secrets: []string{secret}, Store: r.store, Ledger: r.ledger, Metrics: r.metrics, Logger: quiet}
	if !ro.trusted {
		if r.double == nil {
			r.double = testrig.NewStripeDouble(t)
		}
		o.Stripe = NewStripeAPI(testrig.StripeClient(t, r.double.URL()))
	}
	if ro.forward {
		r.queue = NewQueue(r.st.Client, r.st.Keys)
		o.Queue = r.queue
	}
	if !ro.noLog {
		r.log = NewDeliveryLog(r.st.Client, r.st.Keys, 0, 0)
		o.Deliveries = r.log
	}
	if ro.mutate != nil {
		ro.mutate(&o)
	}
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	r.h = h
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

// openStore starts a redis-server (or the embedded store) and connects.
func openStore(t testing.TB, embedded bool) *store.Store {
	t.Helper()
	if embedded {
		return openStoreURL(t, "")
	}
	return openStoreURL(t, testrig.StartRedis(t, testrig.WithoutPersistence()).URL())
}

// openStoreURL connects to a Redis ("" for a new embedded store), as one
// replica does.
func openStoreURL(t testing.TB, url string) *store.Store {
	t.Helper()
	c := config.Redis{URL: url, Prefix: "wh:", DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second}
	s, err := store.Open(c, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// event returns a signed-ready event body.
func event(t testing.TB, id, typ string, created time.Time, obj any) []byte {
	t.Helper()
	b, err := NewEvent(id, typ, created, obj)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sample is Sample for a test, failing it on error.
func sample(t testing.TB, typ string, o SampleOptions) map[string]any {
	t.Helper()
	obj, err := Sample(typ, o)
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// post delivers body with a header as Stripe would; "" content type
// means application/json; charset=utf-8.
func post(t testing.TB, url string, body []byte, sig, contentType string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	if contentType == "" {
		contentType = "application/json; charset=utf-8"
	}
	req.Header.Set("Content-Type", contentType)
	if sig != "" {
		req.Header.Set("Stripe-Signature", sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// deliver signs body with the current secret and posts it.
func (r *rig) deliver(body []byte) (int, string) {
	r.t.Helper()
	return post(r.t, r.url, body, SignatureHeader(body, secret, time.Now()), "")
}

// mustDeliver delivers and fails the test unless the answer is 200 with
// the given result.
func (r *rig) mustDeliver(body []byte, result string) {
	r.t.Helper()
	code, resp := r.deliver(body)
	if code != http.StatusOK || !strings.Contains(resp, `"result":"`+result+`"`) {
		r.t.Fatalf("delivery = %d %s; want 200 with result %q", code, resp, result)
	}
}

// state returns the stored state of a customer, nil when none.
func (r *rig) state(customer string) *entitlements.State {
	r.t.Helper()
	st, err := r.store.Get(context.Background(), customer)
	if errors.Is(err, entitlements.ErrNotFound) {
		return nil
	}
	if err != nil {
		r.t.Fatal(err)
	}
	return st
}

// stripeState is what Stripe (the double) holds for a customer now.
func (r *rig) stripeState(customer string) *entitlements.State {
	r.t.Helper()
	st, err := entitlements.NewStripeSource(testrig.StripeClient(r.t, r.double.URL())).Fetch(context.Background(), customer)
	if err != nil {
		r.t.Fatalf("fetch %s from the double: %v", customer, err)
	}
	return st
}

// sub is a subscription as a test puts it into the double.
func sub(id, customer string, status stripe.SubscriptionStatus, price string, periodEnd time.Time) *stripe.Subscription {
	return &stripe.Subscription{
		ID: id, Customer: &stripe.Customer{ID: customer}, Status: status,
		CurrentPeriodStart: periodEnd.AddDate(0, -1, 0).Unix(), CurrentPeriodEnd: periodEnd.Unix(),
		Items: &stripe.SubscriptionItemList{Data: []*stripe.SubscriptionItem{{ID: "si_" + id, Price: &stripe.Price{ID: price}}}},
	}
}

// subEvent is a customer.subscription.* event about the subscription
// with that id, whatever the payload claims (the handler re-fetches).
func subEvent(t testing.TB, id, typ, customer, status string, created time.Time) []byte {
	t.Helper()
	obj := sample(t, typ, SampleOptions{Customer: customer, Price: "price_payload", Status: status, Now: created})
	return event(t, id, typ, created, obj)
}

// counted is tollgate_webhook_events_total{type,result}.
func counted(m *metrics.Metrics, typ, result string) float64 {
	return testutil.ToFloat64(m.WebhookEvents.WithLabelValues(typ, result))
}
