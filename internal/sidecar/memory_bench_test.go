package sidecar

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// memoryCustomers is how many customers BenchmarkCachedCustomerMemory
// loads: the default gating.cache_size.
const memoryCustomers = 100_000

// BenchmarkCachedCustomerMemory is the live heap a running sidecar holds
// per customer in its entitlement cache (issue 11: the earlier figure came
// from a one-price state). 100,000 realistic states (three items, Stripe
// entitlement features, schedules, a past subscription for some, and the
// failed invoices, pauses and operator grants some customers have) are in
// Redis; a running sidecar loads each one the way a first request does
// (Gate.Decide), and the heap in use after a GC, minus the heap before the
// loads, is divided by the customers now cached. The customer ids are made
// during the loads, so the cache's own copy of each key is counted.
//
// The "requests" case sends each customer's first request through the
// whole request path instead (a JWT minted for it, verified, the route,
// the gate; the route requires a feature nobody has, so nothing is
// forwarded), which adds the token cache (auth.jwt.cache_size, 10,000 by
// default) and the other per-request state to the figure.
//
//	go test -run '^$' -bench CachedCustomerMemory -benchtime 1x ./internal/sidecar/
func BenchmarkCachedCustomerMemory(b *testing.B) {
	rd := testrig.StartRedis(b, testrig.WithoutPersistence())
	cfg := memoryConfig(rd.URL())
	seedRealisticStates(b, rd, cfg.Redis.Prefix, memoryCustomers)
	for _, c := range []struct {
		name  string
		first func(sc *Sidecar, i int) error
	}{
		{"decide", decideFirst},
		{"requests", requestFirst},
	} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				perCustomer := measureCachedCustomers(b, cfg, memoryCustomers, c.first)
				b.ReportMetric(perCustomer, "B/customer")
				b.ReportMetric(perCustomer*memoryCustomers/1e6, "MB/100k")
			}
		})
	}
}

// decideFirst loads customer i the way a first request's gate does.
func decideFirst(sc *Sidecar, i int) error {
	d := sc.Gate.Decide(context.Background(), customerID(i), config.Require{Subscription: true}, false)
	if d.Denial != nil && d.Denial.Status == http.StatusServiceUnavailable {
		return fmt.Errorf("customer %d: %s", i, d.Denial.Code)
	}
	return nil
}

// requestFirst sends customer i's first request through the handler.
func requestFirst(sc *Sidecar, i int) error {
	tok, err := auth.SignHS256([]byte(sc.cfg.Auth.JWT.HMACSecret), jwt.MapClaims{"sub": "u_" + customerID(i),
		"stripe_customer_id": customerID(i), "aud": "api", "exp": time.Now().Add(time.Hour).Unix()})
	if err != nil {
		return err
	}
	r := httptest.NewRequest("GET", "/api/x", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	w := httptest.NewRecorder()
	sc.handler.ServeHTTP(w, r)
	// A paused customer's is a 402; every other one a 403 feature_required.
	if w.Code != http.StatusForbidden && w.Code != http.StatusPaymentRequired {
		return fmt.Errorf("customer %d: %d %s; want 403 feature_required or 402 subscription_required", i, w.Code, w.Body)
	}
	return nil
}

// measureCachedCustomers starts a sidecar, gives n customers their first
// request with first, and returns the live heap per cached customer.
func measureCachedCustomers(b *testing.B, cfg *config.Config, n int, first func(*Sidecar, int) error) float64 {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sc, err := New(ctx, cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		b.Fatal(err)
	}
	if err := sc.Listen(); err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sc.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	testrig.Eventually(b, "the change feed to be live", sc.Gate.Live)

	before := liveHeap()
	var wg sync.WaitGroup
	const loaders = 8
	for w := range loaders {
		wg.Go(func() {
			for i := w; i < n; i += loaders {
				if err := first(sc, i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	after := liveHeap()
	if got := sc.Gate.Cached(); got != n {
		b.Fatalf("cached %d customers; want %d", got, n)
	}
	return float64(after-before) / float64(n)
}

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func customerID(i int) string { return fmt.Sprintf("cus_Q%013d", i) }

// memoryConfig is a sidecar on redisURL with a realistic price list: three
// plans sold monthly and yearly, a metered price, a seat price and an
// add-on, with features and a quota.
func memoryConfig(redisURL string) *config.Config {
	cfg := config.Default()
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Upstream = "http://127.0.0.1:1"
	cfg.Server.DrainDelay = 0
	cfg.Redis.URL = redisURL
	cfg.Redis.Prefix = "tgm:"
	cfg.Auth.JWT.Algorithms, cfg.Auth.JWT.Audience = []string{"HS256"}, []string{"api"}
	cfg.Auth.JWT.HMACSecret = "memory-benchmark-secret-0123456789"
	cfg.Plans = map[string]*config.Plan{
		"starter": {Prices: []string{"price_1QStarterMonthly", "price_1QStarterYearly"}, Features: []string{"reports"},
			Limits: map[string]int64{"api_calls": 10_000}},
		"pro": {Prices: []string{"price_1QProMonthly", "price_1QProYearly"}, Features: []string{"reports", "exports", "webhooks"},
			Limits: map[string]int64{"api_calls": 100_000}},
		"team":  {Prices: []string{"price_1QTeamMonthly", "price_1QTeamYearly"}, Features: []string{"reports", "exports", "webhooks", "sso"}},
		"calls": {Prices: []string{"price_1QApiCallsMetered"}},
		"seats": {Prices: []string{"price_1QSeat"}, Features: []string{"shared-dashboards"}},
	}
	// Nobody has "nobody-has-this": requestFirst's requests are judged and
	// refused, never forwarded.
	cfg.Routes = []*config.Route{{Path: "/api/**", Require: config.Require{Features: []string{"nobody-has-this"}}}}
	return cfg
}

var basePrices = []string{"price_1QStarterMonthly", "price_1QProMonthly", "price_1QTeamYearly", "price_1QProYearly"}

// realisticState is customer i as Stripe would make it: one subscription
// of three items (a plan, the metered calls price, seats), Stripe active
// entitlements for most, a schedule for some, a trial or a cancellation
// for others, a past canceled subscription for one in five, the failed
// invoice of every past_due one, and a paused collection for one in 25.
func realisticState(i int, now time.Time) *entitlements.State {
	id := customerID(i)
	start := now.Add(-time.Duration(i%28) * 24 * time.Hour).Truncate(time.Second).UTC()
	base := basePrices[i%len(basePrices)]
	sub := entitlements.Subscription{
		ID: fmt.Sprintf("sub_1Q%014d", i), Status: []string{"active", "active", "active", "trialing", "past_due"}[i%5],
		Prices: []string{base, "price_1QApiCallsMetered", "price_1QSeat"},
		Items: []entitlements.Item{{ID: fmt.Sprintf("si_Q%014da", i), Price: base},
			{ID: fmt.Sprintf("si_Q%014db", i), Price: "price_1QApiCallsMetered"}, {ID: fmt.Sprintf("si_Q%014dc", i), Price: "price_1QSeat"}},
		CurrentPeriodStart: start, CurrentPeriodEnd: start.AddDate(0, 1, 0), CancelAtPeriodEnd: i%10 == 0,
		Created: start.AddDate(0, -i%12, 0),
	}
	if sub.Status == "trialing" {
		sub.TrialEnd = start.Add(14 * 24 * time.Hour)
	}
	if i%4 == 0 {
		sub.Schedule = fmt.Sprintf("sub_sched_1Q%010d", i)
	}
	st := &entitlements.State{Customer: id, Subscriptions: []entitlements.Subscription{sub},
		Features: []string{"audit-log", "beta-insights", "priority-support"}[:i%4], HadTrial: i%2 == 0,
		UpdatedAt: now, Source: fmt.Sprintf("webhook:evt_1Q%016d", i)}
	if i%7 == 0 {
		st.PaymentFailures = 1
	}
	if sub.Status == "past_due" {
		st.PaymentFailures = 2
		st.FailedInvoice = &entitlements.FailedInvoice{ID: fmt.Sprintf("in_1Q%014d", i), AttemptCount: 2,
			NextPaymentAttempt: now.Add(72 * time.Hour).Truncate(time.Second).UTC(), AmountDue: 4900, Currency: "usd",
			HostedInvoiceURL: fmt.Sprintf("https://invoice.stripe.com/i/acct_1QExample/test_YWNjdF8xUUV4YW1wbGUs%014d", i)}
	}
	if i%25 == 1 {
		st.Subscriptions[0].PauseCollection = &entitlements.PauseCollection{Behavior: "void",
			ResumesAt: start.AddDate(0, 2, 0)}
	}
	if i%5 == 0 {
		old := start.AddDate(-1, 0, 0)
		st.Subscriptions = append(st.Subscriptions, entitlements.Subscription{ID: fmt.Sprintf("sub_1Q%014dx", i),
			Status: "canceled", Prices: []string{"price_1QStarterMonthly"},
			Items:              []entitlements.Item{{ID: fmt.Sprintf("si_Q%014dx", i), Price: "price_1QStarterMonthly"}},
			CurrentPeriodStart: old, CurrentPeriodEnd: old.AddDate(0, 1, 0), Created: old})
	}
	return st
}

// realisticGrants is customer i's operator grants: one customer in 50
// holds one (a feature and a raised limit, until a day next month), one in
// 200 a second, open-ended, that entitles a plan.
func realisticGrants(i int, now time.Time) []entitlements.Grant {
	var out []entitlements.Grant
	if i%50 == 3 {
		out = append(out, entitlements.Grant{ID: fmt.Sprintf("gr_q%022d", i), Customer: customerID(i),
			Features: []string{"exports"}, Limits: map[string]int64{"api_calls": 250_000},
			Until: now.AddDate(0, 1, 0).Truncate(time.Second).UTC(), Reason: "pilot", By: "ops@example.com", Created: now})
	}
	if i%200 == 3 {
		out = append(out, entitlements.Grant{ID: fmt.Sprintf("gr_r%022d", i), Customer: customerID(i), Plan: "team",
			Reason: "partner", By: "ops@example.com", Created: now})
	}
	return out
}

// seedRealisticStates writes n states, and their grants, straight into
// Redis, as webhooks and tollgate grant would have stored them, in
// pipelines of 1,000.
func seedRealisticStates(b *testing.B, rd *testrig.Redis, prefix string, n int) {
	ctx := context.Background()
	keys := store.Keys{Prefix: prefix}
	rdb := rd.Client()
	now := time.Now()
	for lo := 0; lo < n; lo += 1000 {
		pipe := rdb.Pipeline()
		for i := lo; i < min(n, lo+1000); i++ {
			st := realisticState(i, now)
			enc, err := json.Marshal(st)
			if err != nil {
				b.Fatal(err)
			}
			pipe.Set(ctx, keys.Customer(st.Customer, "state"), enc, 0)
			pipe.SAdd(ctx, keys.Global("customers"), st.Customer)
			for _, g := range realisticGrants(i, now) {
				enc, err := json.Marshal(g)
				if err != nil {
					b.Fatal(err)
				}
				pipe.HSet(ctx, keys.Customer(g.Customer, "grants"), g.ID, enc)
				pipe.HSet(ctx, keys.Global("grants"), g.ID, g.Customer)
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
