package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// A replica SIGKILLed while it holds a share of a customer's quota: the
// units it served stay used, its unused units come back once its lease
// expires (metering.quota.lease_ttl), and across both replicas exactly the
// limit is served, not one request more.
func TestQuotaShareOfAKilledReplicaComesBack(t *testing.T) {
	bin := buildBinary(t)
	rd := testrig.StartRedis(t)
	var served atomic.Int64
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served.Add(1) }))
	defer app.Close()
	const limit = 400
	cfgPath := filepath.Join(t.TempDir(), "tollgate.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
upstream: %s
server: { drain_delay: 0s, shutdown_timeout: 10s }
redis: { url: %q, prefix: "tgq:" }
stripe: { trusted_payloads: true }
auth: { jwt: { algorithms: [HS256], audience: [api], hmac_secret: %q } }
plans: { starter: { prices: [price_q], limits: { calls: %d } } }
routes: [ { path: /api/**, require: { subscription: true }, meter: calls } ]
billing: { prefix: "" }
metering:
  flush_interval: 100ms
  window: 1s
  quota: { lease_ttl: 3s, sync_interval: 1s }
  meters: { calls: { event_name: api_calls } }
`, app.URL, rd.URL(), meterTestSecret, limit)), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(config.Redis{URL: rd.URL(), Prefix: "tgq:"}, newLogger(config.Log{Level: "error"}, &bytes.Buffer{}))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	periodStart := time.Now().Add(-time.Hour).Truncate(time.Second)
	err = entitlements.NewRedisStore(st).Update(ctx, "cus_K", func(*entitlements.State) (*entitlements.State, error) {
		return &entitlements.State{Subscriptions: []entitlements.Subscription{{ID: "sub_K", Status: "active", Prices: []string{"price_q"},
			CurrentPeriodStart: periodStart, CurrentPeriodEnd: periodStart.Add(30 * 24 * time.Hour)}}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tok := bearer(t, "cus_K")
	get := func(addr string) *http.Response {
		req, _ := http.NewRequest("GET", "http://"+addr+"/api/x", nil)
		req.Header.Set("Authorization", tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	serveUntilRefused := func(addr string) (int, *http.Response) {
		for n := 0; ; n++ {
			if resp := get(addr); resp.StatusCode != 200 {
				return n, resp
			}
		}
	}

	victim := startTollgate(t, bin, cfgPath)
	survivor := startTollgate(t, bin, cfgPath)
	const byVictim = 20
	for i := range byVictim {
		if resp := get(victim.proxyAddr); resp.StatusCode != 200 {
			t.Fatalf("victim request %d = %d", i+1, resp.StatusCode)
		}
	}
	// A sync round reports the 20 units and renews the share they came
	// from (used since the last round); the next round would hand its
	// unused rest back. Kill the victim in between.
	ledger := st.Keys.Customer("cus_K", "quota", "calls", strconv.FormatInt(periodStart.Unix(), 10))
	var held int64
	testrig.WaitFor(t, 20*time.Second, func() error {
		used, _ := st.Client.HGet(ctx, ledger, "used").Int64()
		leases := st.Client.HGetAll(ctx, ledger+":leases").Val()
		if used != byVictim || len(leases) != 1 {
			return fmt.Errorf("ledger used %d, leases %v; want the victim's %d units reported and its share held", used, leases, byVictim)
		}
		for _, v := range leases {
			fmt.Sscanf(v, "%d:", &held)
		}
		return nil
	})
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-victim.exited
	killed := time.Now()

	before, refusal := serveUntilRefused(survivor.proxyAddr)
	if want := limit - byVictim - int(held); before != want {
		t.Errorf("while the killed replica's lease lasts, the survivor served %d; want %d (limit - %d served - %d held)", before, want, byVictim, held)
	}
	if ra, _ := strconv.Atoi(refusal.Header.Get("Retry-After")); refusal.StatusCode != 429 || ra < 1 || ra > 1 {
		t.Errorf("refusal while units are held elsewhere: %d, Retry-After %q; want 429 and 1 (a sync interval, not the period end)",
			refusal.StatusCode, refusal.Header.Get("Retry-After"))
	}
	after := 0
	testrig.WaitFor(t, 20*time.Second, func() error {
		n, _ := serveUntilRefused(survivor.proxyAddr)
		if after += n; after < int(held) {
			return fmt.Errorf("the survivor served %d of the %d units the killed replica held", after, held)
		}
		return nil
	})
	back := time.Since(killed)
	t.Logf("killed replica held %d units; they came back after %v (lease_ttl 3s)", held, back.Round(10*time.Millisecond))
	if total := byVictim + before + after; total != limit || served.Load() != limit {
		t.Errorf("served %d in all (victim %d, survivor %d + %d), the app saw %d; want exactly %d", total, byVictim, before, after, served.Load(), limit)
	}
	if back > 3*time.Second+2*time.Second {
		t.Errorf("the killed replica's units came back after %v; want within lease_ttl (3s) and a retry", back)
	}
}
