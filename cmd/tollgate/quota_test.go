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
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/fail" {
			w.WriteHeader(http.StatusInternalServerError) // not billed: the reservation is released
			return
		}
		served.Add(1)
	}))
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
  quota: { lease_ttl: 6s, sync_interval: 1s }
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
	// from. Requests the app fails (released, not billed) keep the share in
	// use until the kill, so no round hands it back first however slowly
	// this machine runs.
	ledger := st.Keys.Customer("cus_K", "quota", "calls", strconv.FormatInt(periodStart.Unix(), 10))
	stopUse, usedUp := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(usedUp)
		for {
			select {
			case <-stopUse:
				return
			default:
			}
			req, _ := http.NewRequest("GET", "http://"+victim.proxyAddr+"/api/fail", nil)
			req.Header.Set("Authorization", tok)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()
	testrig.WaitFor(t, 20*time.Second, func() error {
		used, _ := st.Client.HGet(ctx, ledger, "used").Int64()
		leases := st.Client.HGetAll(ctx, ledger+":leases").Val()
		if used != byVictim || len(leases) != 1 {
			return fmt.Errorf("ledger used %d, leases %v; want the victim's %d units reported and its share held", used, leases, byVictim)
		}
		return nil
	})
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-victim.exited
	close(stopUse)
	<-usedUp
	// What the ledger holds for the dead replica, and until when (Redis's
	// clock, Unix ms; the same host's clock as this test's).
	used, _ := st.Client.HGet(ctx, ledger, "used").Int64()
	var held, expiry int64
	for _, v := range st.Client.HGetAll(ctx, ledger+":leases").Val() {
		fmt.Sscanf(v, "%d:%d", &held, &expiry)
	}
	if used != byVictim || held <= 0 {
		t.Fatalf("after the kill the ledger has used %d, held %d; want the victim's %d units and its share", used, held, byVictim)
	}
	expires := time.UnixMilli(expiry)

	before, refusal := serveUntilRefused(survivor.proxyAddr)
	if time.Now().Before(expires) {
		// The lease lasted through the whole run: the survivor could not
		// admit one of the dead replica's units.
		if want := limit - byVictim - int(held); before != want {
			t.Errorf("while the killed replica's lease lasts, the survivor served %d; want %d (limit - %d served - %d held)", before, want, byVictim, held)
		}
		if ra, _ := strconv.Atoi(refusal.Header.Get("Retry-After")); refusal.StatusCode != 429 || ra != 1 {
			t.Errorf("refusal while units are held elsewhere: %d, Retry-After %q; want 429 and 1 (a sync interval, not the period end)",
				refusal.StatusCode, refusal.Header.Get("Retry-After"))
		}
	} else {
		t.Logf("this machine took longer than the lease (6s) to serve %d requests: the held units came back during the run", before)
	}
	after := 0
	var firstBack time.Time
	testrig.WaitFor(t, 30*time.Second, func() error {
		n, _ := serveUntilRefused(survivor.proxyAddr)
		if n > 0 && firstBack.IsZero() {
			firstBack = time.Now()
		}
		if after += n; byVictim+before+after < limit {
			return fmt.Errorf("served %d in all; waiting for the %d units the killed replica held", byVictim+before+after, held)
		}
		return nil
	})
	if !firstBack.IsZero() && firstBack.Before(expires) {
		t.Errorf("the killed replica's units were admitted again at %v, before its lease expired at %v", firstBack, expires)
	}
	t.Logf("killed replica held %d units until %v; the survivor served %d before and %d after", held, expires, before, after)
	if total := byVictim + before + after; total != limit || served.Load() != limit {
		t.Errorf("served %d in all (victim %d, survivor %d + %d), the app saw %d; want exactly %d", total, byVictim, before, after, served.Load(), limit)
	}
}
