package sidecar

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/meter"
	"github.com/tollgate-dev/tollgate/proxy"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// BenchmarkGatedRequest is tollgate's whole request path in one process: a
// cached JWT, a cached entitlement decision, the proxy, and an upstream
// that answers at once over loopback HTTP.
func BenchmarkGatedRequest(b *testing.B) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer app.Close()
	cfg := config.Default()
	cfg.Upstream = app.URL
	cfg.Auth.JWT.Algorithms, cfg.Auth.JWT.Audience = []string{"HS256"}, []string{"api"}
	cfg.Auth.JWT.HMACSecret = strings.Repeat("k", 32)
	cfg.Plans = map[string]*config.Plan{"pro": {Prices: []string{"price_pro"}, Features: []string{"exports"}}}
	cfg.Routes = []*config.Route{{Path: "/api/**", Require: config.Require{Features: []string{"exports"}}}}
	sc, err := New(context.Background(), cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		b.Fatal(err)
	}
	defer sc.close()
	err = sc.Customers.Update(context.Background(), "cus_b", func(*entitlements.State) (*entitlements.State, error) {
		return &entitlements.State{Subscriptions: []entitlements.Subscription{{ID: "s",
			Status: "active", Prices: []string{"price_pro"}, CurrentPeriodEnd: time.Now().Add(time.Hour)}}}, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sc.Gate.Run(ctx)
	for !sc.Gate.Live() {
		time.Sleep(time.Millisecond)
	}
	tok, _ := auth.SignHS256([]byte(cfg.Auth.JWT.HMACSecret), jwt.MapClaims{
		"sub": "u", "stripe_customer_id": "cus_b", "aud": "api", "exp": time.Now().Add(time.Hour).Unix()})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := httptest.NewRequest("GET", "/api/x", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		sc.handler.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

// BenchmarkQuotaAdapterReserve is a reservation as the proxy makes it:
// through proxy.Quota and proxy.Hold, while the share lasts. It must not
// allocate (the hold is one pointer in an interface value).
//
//	go test -run '^$' -bench QuotaAdapter -benchmem ./internal/sidecar/
func BenchmarkQuotaAdapterReserve(b *testing.B) {
	rd := testrig.StartRedis(b, testrig.WithoutPersistence())
	q := meter.NewQuotas(meter.QuotaOptions{Redis: rd.Client(), Keys: store.Keys{Prefix: "tb:"},
		Used:     func(context.Context, string, string, time.Time) (int64, error) { return 0, nil },
		LeaseTTL: 10 * time.Second, SyncInterval: time.Second, MaxShares: 100, Metrics: metrics.New()})
	defer q.Close(context.Background())
	var a proxy.Quota = quotaAdapter{q: q, now: time.Now, soon: time.Second}
	start := time.Now().Add(-time.Hour)
	c := proxy.Claim{Customer: "cus_B", Meter: "calls", Units: 1,
		Limit: proxy.Limit{Set: true, Units: 1 << 40, PeriodStart: start, PeriodEnd: start.Add(720 * time.Hour)}}
	ctx := context.Background()
	h, err := a.Reserve(ctx, c) // takes the share
	if err != nil {
		b.Fatal(err)
	}
	h.Settle(1, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		h, err := a.Reserve(ctx, c)
		if err != nil {
			b.Fatal(err)
		}
		h.Settle(1, 1)
	}
}
