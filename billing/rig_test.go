package billing

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/internal/logging"
	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

const prefix = "/_tollgate/billing"

// rig is a billing Handler on a real redis-server and the recording Stripe
// double, with a catalogue of prices:
//
//	starter: price_starter_m (10.00/month), price_starter_y (100.00/year); api_calls limited to 100
//	pro:     price_pro_m (30.00/month) and the metered price_calls_m; features [exports]
//	team:    price_team_m (90.00/month)
//	lifetime: price_life (500.00 once)
//	retired: price_gone (archived)
type rig struct {
	t      *testing.T
	double *testrig.StripeDouble
	store  *entitlements.RedisStore
	st     *store.Store
	gate   *entitlements.Gate
	h      *Handler
	logs   *testrig.LogBuffer
	log    *slog.Logger
	now    time.Time
	used   map[string]int64
	prices map[string]*stripe.Price // what putPrice gave the double
}

func newRig(t *testing.T) *rig {
	t.Helper()
	rd := testrig.StartRedis(t)
	r := &rig{t: t, double: testrig.NewStripeDouble(t), logs: &testrig.LogBuffer{},
		now: time.Now().Truncate(time.Second), used: map[string]int64{}, prices: map[string]*stripe.Price{}}
	r.log = logging.New(config.Log{Level: "debug", Format: "json"}, r.logs)
	st, err := store.Open(config.Redis{URL: rd.URL(), Prefix: "b:"}, r.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r.st, r.store = st, entitlements.NewRedisStore(st)
	api := testrig.StripeClient(t, r.double.URL())
	cfg := config.Default()
	cfg.Stripe.SecretKey = testrig.StripeTestKey
	cfg.Billing.TrialDays = 14
	cfg.Billing.SuccessURL = "https://app.test/billing?s={CHECKOUT_SESSION_ID}"
	cfg.Billing.CancelURL = "https://app.test/billing?cancelled"
	cfg.Billing.ReturnURL = "https://app.test/billing"
	cfg.Plans = map[string]*config.Plan{
		"starter":  {Prices: []string{"price_starter_m", "price_starter_y"}, Limits: map[string]int64{"api_calls": 100}},
		"pro":      {Prices: []string{"price_pro_m", "price_calls_m"}, Features: []string{"exports"}},
		"team":     {Prices: []string{"price_team_m"}, Features: []string{"exports", "sso"}},
		"lifetime": {Prices: []string{"price_life"}},
		"retired":  {Prices: []string{"price_gone"}},
	}
	cfg.Metering.Meters = map[string]*config.Meter{"api_calls": {EventName: "api_calls"}}
	r.gate = entitlements.New(entitlements.Options{Store: r.store, Source: entitlements.NewStripeSource(api), Grants: r.store,
		Plans: cfg.Plans, Gating: cfg.Gating, Logger: r.log})
	r.h, err = New(Options{Config: cfg, Stripe: api, Store: r.store, Source: entitlements.NewStripeSource(api),
		Gate: r.gate, Checkouts: NewRedisCheckouts(st), Replays: NewRedisReplays(st), Logger: r.log, Now: func() time.Time { return r.now },
		Used: func(_ context.Context, customer, meter string, since time.Time) (int64, error) {
			return r.used[customer+"/"+meter], nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*stripe.Price{
		recurring("price_starter_m", 1000, stripe.PriceRecurringIntervalMonth, false),
		recurring("price_starter_y", 10000, stripe.PriceRecurringIntervalYear, false),
		recurring("price_pro_m", 3000, stripe.PriceRecurringIntervalMonth, false),
		recurring("price_calls_m", 1, stripe.PriceRecurringIntervalMonth, true),
		recurring("price_team_m", 9000, stripe.PriceRecurringIntervalMonth, false),
		{ID: "price_life", Active: true, Type: stripe.PriceTypeOneTime, UnitAmount: 50000, Currency: "usd"},
		{ID: "price_gone", Active: false, Type: stripe.PriceTypeRecurring, UnitAmount: 1, Currency: "usd",
			Recurring: &stripe.PriceRecurring{Interval: "month", IntervalCount: 1}},
	} {
		r.putPrice(p)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("billing logs:\n%s", r.logs.String())
		}
	})
	return r
}

// putPrice adds a price to the double's catalogue; subscriptions made by
// subscribe carry it whole, as Stripe's do.
func (r *rig) putPrice(p *stripe.Price) {
	r.prices[p.ID] = p
	r.double.PutPrice(p)
}

func recurring(id string, amount int64, iv stripe.PriceRecurringInterval, isMetered bool) *stripe.Price {
	p := &stripe.Price{ID: id, Active: true, Type: stripe.PriceTypeRecurring, UnitAmount: amount, Currency: "usd",
		BillingScheme: stripe.PriceBillingSchemePerUnit,
		Recurring:     &stripe.PriceRecurring{Interval: iv, IntervalCount: 1, UsageType: stripe.PriceRecurringUsageTypeLicensed}}
	if isMetered {
		p.Recurring.UsageType = stripe.PriceRecurringUsageTypeMetered
	}
	return p
}

// subscribe gives customer an active subscription to prices (quantity 1,
// none for metered ones) in the double, for the current month.
func (r *rig) subscribe(customer, sub string, status stripe.SubscriptionStatus, prices ...string) {
	r.t.Helper()
	r.double.PutCustomer(&stripe.Customer{ID: customer})
	s := &stripe.Subscription{ID: sub, Customer: &stripe.Customer{ID: customer}, Status: status,
		Created:            r.now.Add(-10 * 24 * time.Hour).Unix(),
		CurrentPeriodStart: r.now.Add(-10 * 24 * time.Hour).Unix(),
		CurrentPeriodEnd:   r.now.Add(20 * 24 * time.Hour).Unix(),
		Items:              &stripe.SubscriptionItemList{}}
	for i, id := range prices {
		price, ok := r.prices[id]
		if !ok {
			r.t.Fatalf("subscribe: no price %s in the catalogue", id)
		}
		it := &stripe.SubscriptionItem{ID: sub + "_item" + string(rune('a'+i)), Price: price}
		if !strings.HasPrefix(id, "price_calls") {
			it.Quantity = 1
		}
		s.Items.Data = append(s.Items.Data, it)
	}
	r.double.PutSubscription(s)
}

// answer is one billing API answer.
type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (a answer) code() string {
	e, _ := a.body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func (a answer) str(key string) string {
	s, _ := a.body[key].(string)
	return s
}

// call sends one request as the verified caller (user, customer).
func (r *rig) call(method, path, user, customer, body string, header ...string) answer {
	r.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, prefix+path, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	ctx := logging.WithRequestID(req.Context(), "req-test")
	if user != "" {
		ctx = auth.NewContext(ctx, auth.Identity{User: user, Customer: customer})
	}
	rec := httptest.NewRecorder()
	r.h.ServeHTTP(rec, req.WithContext(ctx))
	a := answer{status: rec.Code, header: rec.Header(), raw: rec.Body.String()}
	if err := json.Unmarshal(rec.Body.Bytes(), &a.body); err != nil {
		r.t.Fatalf("%s %s: answer is not a JSON object: %v\n%s", method, path, err, rec.Body.String())
	}
	return a
}

// stripeCalls returns the double's recorded requests with method and path.
func (r *rig) stripeCalls(method, path string) []testrig.RecordedRequest {
	var out []testrig.RecordedRequest
	for _, q := range r.double.Requests() {
		if q.Method == method && q.Path == path {
			out = append(out, q)
		}
	}
	return out
}

// invoiceView decodes one of a preview's invoices (due_now, next_invoice);
// a null one is the zero value.
func (r *rig) invoiceView(a answer, key string) invoiceView {
	r.t.Helper()
	var v invoiceView
	raw, err := json.Marshal(a.body[key])
	if err == nil {
		err = json.Unmarshal(raw, &v)
	}
	if err != nil {
		r.t.Fatalf("%s of %s: %v", key, a.raw, err)
	}
	return v
}
