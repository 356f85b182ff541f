package sidecar

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/meter"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// quotaConfig is a replica with a quota of limit on meter calls for plan
// starter, on /api/**.
func quotaConfig(t *testing.T, upstream, redisURL string, limit int64) *config.Config {
	cfg := testConfig(t, upstream)
	cfg.Redis.URL = redisURL
	cfg.Metering.FlushInterval, cfg.Metering.Window = 50*time.Millisecond, time.Second
	cfg.Metering.Meters = map[string]*config.Meter{"calls": {EventName: "calls"}, "other": {EventName: "other"}}
	cfg.Plans = map[string]*config.Plan{"starter": {Prices: []string{"price_s"}, Limits: map[string]int64{"calls": limit}}}
	cfg.Routes = []*config.Route{
		{Path: "/api/**", Require: config.Require{Subscription: true}, Meter: "calls"},
		{Path: "/other/**", Require: config.Require{Subscription: true}, Meter: "other"},
	}
	return cfg
}

// subscribe writes an active starter subscription for customer, whose
// period ends at end, and returns a token for it.
func subscribe(t *testing.T, r *running, customer string, end time.Time) string {
	t.Helper()
	err := r.sc.Customers.Update(context.Background(), customer, func(*entitlements.State) (*entitlements.State, error) {
		return &entitlements.State{Subscriptions: []entitlements.Subscription{{ID: "sub_" + customer, Status: "active",
			Prices: []string{"price_s"}, CurrentPeriodStart: time.Now().Add(-time.Hour), CurrentPeriodEnd: end}}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.SignHS256([]byte(strings.Repeat("k", 32)), jwt.MapClaims{
		"sub": "u", "stripe_customer_id": customer, "aud": "api", "exp": time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func call(t *testing.T, addr, tok, path string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// A plan limit turns a meter into a quota for the billing period: exactly
// the limit is served, then 429 quota_exceeded with Retry-After to the
// period end, the limit and usage in the body and the RateLimit fields;
// another meter of the same plan is not affected.
func TestQuotaExceeded(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer app.Close()
	r := start(t, quotaConfig(t, app.URL, rd.URL(), 3))
	periodEnd := time.Now().Add(10 * 24 * time.Hour).Truncate(time.Second)
	tok := subscribe(t, r, "cus_q", periodEnd)
	for i := 0; i < 3; i++ {
		resp := call(t, r.sc.ProxyAddr(), tok, "/api/x")
		if resp.StatusCode != 200 {
			t.Fatalf("request %d within the quota = %d", i+1, resp.StatusCode)
		}
		if got, want := resp.Header.Get("RateLimit"), fmt.Sprintf(`"calls";r=%d;`, 2-i); !strings.HasPrefix(got, want) {
			t.Errorf("request %d: RateLimit = %q; want it to start with %s", i+1, got, want)
		}
	}
	denied := call(t, r.sc.ProxyAddr(), tok, "/api/x")
	if denied.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("request 4 on a quota of 3 = %d; want 429", denied.StatusCode)
	}
	var body struct {
		Error       struct{ Code string }
		Limit, Used int64
	}
	json.NewDecoder(denied.Body).Decode(&body)
	if body.Error.Code != "quota_exceeded" || body.Limit != 3 || body.Used != 3 {
		t.Errorf("body = %+v; want quota_exceeded, limit 3, used 3", body)
	}
	ra, _ := strconv.Atoi(denied.Header.Get("Retry-After"))
	if want := time.Until(periodEnd).Seconds(); float64(ra) < want-60 || float64(ra) > want+60 {
		t.Errorf("Retry-After = %d s; want about %.0f s (to the period end)", ra, want)
	}
	if p := denied.Header.Get("RateLimit-Policy"); !strings.HasPrefix(p, `"calls";q=3;w=`) {
		t.Errorf("RateLimit-Policy = %q; want \"calls\";q=3;w=...", p)
	}
	if resp := call(t, r.sc.ProxyAddr(), tok, "/other/x"); resp.StatusCode != 200 || resp.Header.Get("RateLimit") != "" {
		t.Errorf("a meter without a limit = %d, RateLimit %q; want 200 and no RateLimit", resp.StatusCode, resp.Header.Get("RateLimit"))
	}
}

// The issue-9 attack over HTTP: 64 clients at once against a slow upstream
// on a quota of 50 were all admitted. Now exactly 50 reach the app, on one
// replica and on three replicas sharing one Redis.
func TestQuotaExactWithSlowUpstream(t *testing.T) {
	for _, replicas := range []int{1, 3} {
		t.Run(strconv.Itoa(replicas)+" replicas", func(t *testing.T) {
			rd := testrig.StartRedis(t, testrig.WithoutPersistence())
			var arrived, denied atomic.Int32
			release := make(chan struct{})
			app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				arrived.Add(1)
				<-release // slow: every admitted request is in flight at once
			}))
			defer app.Close()
			var rs []*running
			for range replicas {
				rs = append(rs, start(t, quotaConfig(t, app.URL, rd.URL(), 50)))
			}
			tok := subscribe(t, rs[0], "cus_c", time.Now().Add(24*time.Hour))
			for _, r := range rs {
				testrig.Eventually(t, "replica ready", func() bool {
					code, _ := get(t, "http://"+r.sc.AdminAddr()+"/readyz")
					return code == 200
				})
			}
			const clients = 64
			codes := make([]int, clients)
			var wg sync.WaitGroup
			for i := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					req, _ := http.NewRequest("GET", "http://"+rs[i%replicas].sc.ProxyAddr()+"/api/x", nil)
					req.Header.Set("Authorization", "Bearer "+tok)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					resp.Body.Close()
					if codes[i] = resp.StatusCode; resp.StatusCode == http.StatusTooManyRequests {
						denied.Add(1)
					}
				}()
			}
			testrig.Eventually(t, "every request admitted or refused", func() bool { return arrived.Load()+denied.Load() == clients })
			close(release)
			wg.Wait()
			ok := 0
			for _, c := range codes {
				if c == 200 {
					ok++
				} else if c != http.StatusTooManyRequests {
					t.Errorf("status %d; want 200 or 429", c)
				}
			}
			if ok != 50 || arrived.Load() != 50 {
				t.Errorf("%d concurrent clients on a quota of 50 over %d replicas: %d answered 200, the app saw %d; want exactly 50",
					clients, replicas, ok, arrived.Load())
			}
		})
	}
}

// A damaged quota ledger (a used field that is not a count, read as 0 by
// the old script) must not open the customer's quota again: that
// customer's limited route fails closed with 503 entitlements_unavailable
// (a fail_open route is forwarded unreserved), another customer is served
// as before, and the refusal is logged at error and counted.
func TestQuotaCorruptLedgerFailsClosedForThatCustomer(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer app.Close()
	cfg := quotaConfig(t, app.URL, rd.URL(), 100)
	cfg.Metering.Quota.LeaseTTL, cfg.Metering.Quota.SyncInterval = 3*time.Second, 100*time.Millisecond
	cfg.Routes = append([]*config.Route{{Path: "/open/**", Require: config.Require{Subscription: true}, Meter: "calls", FailOpen: true}},
		cfg.Routes...)
	var logs testrig.LogBuffer
	r := startLogged(t, cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
	end := time.Now().Add(24 * time.Hour)
	bad, ok := subscribe(t, r, "cus_bad", end), subscribe(t, r, "cus_ok", end)
	if resp := call(t, r.sc.ProxyAddr(), bad, "/api/x"); resp.StatusCode != 200 {
		t.Fatalf("cus_bad before the damage: %d; want 200", resp.StatusCode)
	}
	ctx := context.Background()
	admin := rd.Client()
	ledgers, err := admin.Keys(ctx, "*{cus_bad}:quota:calls:*").Result()
	if err != nil || len(ledgers) != 2 {
		t.Fatalf("cus_bad's ledger keys = %v, %v; want the ledger and its leases", ledgers, err)
	}
	led := ledgers[0]
	if strings.HasSuffix(led, ":leases") {
		led = ledgers[1]
	}
	if err := admin.HSet(ctx, led, "used", "-1000").Err(); err != nil {
		t.Fatal(err)
	}
	// The replica's next ledger call (its sync) finds the damage and stops
	// admitting from the share it holds.
	testrig.WaitFor(t, 20*time.Second, func() error {
		if resp := call(t, r.sc.ProxyAddr(), bad, "/api/x"); resp.StatusCode != http.StatusServiceUnavailable {
			return fmt.Errorf("cus_bad on a corrupt ledger: %d; want 503", resp.StatusCode)
		}
		return nil
	})
	resp := call(t, r.sc.ProxyAddr(), bad, "/api/x")
	var body struct {
		Error struct{ Code string } `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 503 || body.Error.Code != "entitlements_unavailable" {
		t.Errorf("cus_bad: %d %+v (%v); want 503 entitlements_unavailable", resp.StatusCode, body, err)
	}
	if resp := call(t, r.sc.ProxyAddr(), bad, "/open/x"); resp.StatusCode != 200 {
		t.Errorf("cus_bad on a fail_open route: %d; want 200, forwarded unreserved", resp.StatusCode)
	}
	for i := range 5 {
		if resp := call(t, r.sc.ProxyAddr(), ok, "/api/x"); resp.StatusCode != 200 {
			t.Errorf("cus_ok request %d: %d; want 200", i, resp.StatusCode)
		}
	}
	if used := admin.HGet(ctx, led, "used").Val(); used != "-1000" {
		t.Errorf("the damaged field was rewritten to %q; want it left for the operator", used)
	}
	_, metricsText := get(t, "http://"+r.sc.AdminAddr()+"/metrics")
	if !regexp.MustCompile(`(?m)^tollgate_quota_lease_requests_total\{result="corrupt"\} [1-9]`).MatchString(metricsText) {
		t.Errorf("tollgate_quota_lease_requests_total{result=\"corrupt\"} not counted")
	}
	lines, err := testrig.ParseLogLines(logs.String())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range lines {
		found = found || l["level"] == "ERROR" && l["customer"] == "cus_bad" && strings.Contains(fmt.Sprint(l["err"]), led)
	}
	if !found {
		t.Errorf("no error log line names cus_bad and %s", led)
	}
}

// At the largest metering.max_units_per_request (2^40) an answer declaring
// all of it is billed, not refused by the meter as out of range (the
// meter's own bound was 10^12, below the proxy's), and it closes the quota
// it overran.
func TestQuotaAnswerAtTheLargestBoundIsBilled(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Tollgate-Usage", strconv.FormatInt(config.MaxUnitsBound, 10))
	}))
	defer app.Close()
	cfg := quotaConfig(t, app.URL, rd.URL(), 1000)
	cfg.Metering.MaxUnitsPerRequest = config.MaxUnitsBound
	r := start(t, cfg)
	tok := subscribe(t, r, "cus_big", time.Now().Add(24*time.Hour))
	if resp := call(t, r.sc.ProxyAddr(), tok, "/api/x"); resp.StatusCode != 200 {
		t.Fatalf("first request: %d; want 200", resp.StatusCode)
	}
	if resp := call(t, r.sc.ProxyAddr(), tok, "/api/x"); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("after an answer of 2^40 units on a quota of 1000: %d; want 429", resp.StatusCode)
	}
	testrig.WaitFor(t, 10*time.Second, func() error {
		u, err := meter.ReadUsage(context.Background(), rd.Client(), r.sc.Store.Keys)
		if err != nil {
			return err
		}
		for _, row := range u.Rows {
			if row.Customer == "cus_big" && row.Counted == config.MaxUnitsBound {
				return nil
			}
		}
		return fmt.Errorf("usage %+v; want cus_big counted %d", u.Rows, int64(config.MaxUnitsBound))
	})
}
