package sidecar

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/meter"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// servedLedger is the upstream's own account of the units it served (2xx
// with X-Tollgate-Usage), per customer: the truth billing must match.
type servedLedger struct {
	mu    sync.Mutex
	units map[string]int64
}

func (l *servedLedger) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("fail") != "" {
			w.WriteHeader(http.StatusServiceUnavailable) // not billed
			return
		}
		u, _ := strconv.ParseInt(r.URL.Query().Get("u"), 10, 64)
		l.mu.Lock()
		l.units[r.Header.Get("X-Tollgate-Customer")] += u
		l.mu.Unlock()
		w.Header().Set("X-Tollgate-Usage", strconv.FormatInt(u, 10))
		io.WriteString(w, "ok")
	})
}

func (l *servedLedger) snapshot() map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int64, len(l.units))
	for k, v := range l.units {
		out[k] = v
	}
	return out
}

func meteringConfig(t *testing.T, upstream, redisURL, stripeURL string) *config.Config {
	t.Helper()
	cfg := testConfig(t, upstream)
	cfg.Redis.URL = redisURL
	cfg.Stripe.SecretKey, cfg.Stripe.TrustedPayloads = testrig.StripeTestKey, false
	cfg.Stripe.APIBase = stripeURL
	cfg.Stripe.Timeout = 300 * time.Millisecond // answers held back by the double time out quickly
	cfg.Stripe.MaxNetworkRetries = 0            // our retries, with the same identifier
	cfg.Routes = []*config.Route{{Path: "/api/**", Meter: "calls"}}
	cfg.Metering.FlushInterval = 50 * time.Millisecond
	cfg.Metering.Window = time.Second
	cfg.Metering.LeaseTTL = time.Second
	cfg.Metering.RateLimit = 1000
	cfg.Metering.Meters = map[string]*config.Meter{"calls": {EventName: "api_calls"}}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("metering config invalid: %v", err)
	}
	return cfg
}

func customerToken(t *testing.T, secret, customer string) string {
	t.Helper()
	tok, err := auth.SignHS256([]byte(secret), jwt.MapClaims{
		"sub": "user_" + customer, "aud": "api", "exp": time.Now().Add(time.Hour).Unix(), "stripe_customer_id": customer,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// load sends metered requests for customers to whichever replica target
// names, until stop is closed.
type load struct {
	t       *testing.T
	tokens  []string
	target  func(worker int) string
	sent    atomic.Int64
	failed  atomic.Int64
	stop    chan struct{}
	wg      sync.WaitGroup
	clients []*http.Client
}

func (l *load) run(workers int) {
	for w := range workers {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
		l.clients = append(l.clients, c)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				url := fmt.Sprintf("http://%s/api/work?u=%d", l.target(w), 1+rng.IntN(5))
				if rng.IntN(10) == 0 {
					url += "&fail=1"
				}
				req, _ := http.NewRequest("GET", url, nil)
				req.Header.Set("Authorization", "Bearer "+l.tokens[rng.IntN(len(l.tokens))])
				resp, err := c.Do(req)
				if err != nil {
					l.failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				l.sent.Add(1)
			}
		}()
	}
}

func (l *load) end() {
	close(l.stop)
	l.wg.Wait()
	for _, c := range l.clients {
		c.CloseIdleConnections()
	}
}

// The proof (issue 6, Deliver 7): two replicas on one Redis, Stripe failing
// a share of calls with 500 and 429 and timing out some after recording
// them, one replica stopped gracefully and Redis restarted mid-run. Units
// reported to Stripe equal units the upstream served, exactly, and no
// identifier is accepted twice.
func TestMeteringEndToEndExactlyOnce(t *testing.T) {
	rd := testrig.StartRedis(t)
	double := testrig.NewStripeDouble(t)
	meterEvents := "/v1/billing/meter_events"
	double.FailRateWith(0.2, 11, testrig.Fault{Status: 500, Type: "api_error", Message: "An unknown error occurred", ShouldRetry: "true", PathPrefix: meterEvents})
	double.TimeoutAfterRecord(0.15, 12)
	ledger := &servedLedger{units: make(map[string]int64)}
	app := httptest.NewServer(ledger.handler())
	defer app.Close()
	cfg := meteringConfig(t, app.URL, rd.URL(), double.URL())

	a := start(t, cfg)
	rdb := rd.Client()
	leaseKey := store.Keys{Prefix: cfg.Redis.Prefix}.Global("usage", "lease")
	testrig.Eventually(t, "replica A to take the report lease", func() bool { return rdb.Exists(context.Background(), leaseKey).Val() == 1 })
	b := start(t, cfg)

	var tokens []string
	for i := range 12 {
		tokens = append(tokens, customerToken(t, cfg.Auth.JWT.HMACSecret, "cus_E2E"+strconv.Itoa(i)))
	}
	var aStopped atomic.Bool
	l := &load{t: t, tokens: tokens, stop: make(chan struct{}), target: func(w int) string {
		if w%2 == 0 && !aStopped.Load() {
			return a.sc.ProxyAddr()
		}
		return b.sc.ProxyAddr()
	}}
	l.run(4)

	time.Sleep(time.Second) // load runs: a timeline, not a wait for a condition
	// Redis crashes (SIGKILL; AOF keeps every acknowledged write) and is
	// down for a while: counts wait in the replicas' buffers, reports stall.
	down := time.Now()
	rd.Kill()
	time.Sleep(400 * time.Millisecond)
	rd.Restart()
	t.Logf("redis down for %v", time.Since(down).Round(time.Millisecond))
	double.FailRate(0.2, http.StatusTooManyRequests, 13)
	time.Sleep(700 * time.Millisecond)
	aStopped.Store(true)
	a.stop() // graceful: A flushes, releases the lease, B takes over
	if err := <-a.done; err != nil {
		t.Errorf("replica A Serve = %v; want nil", err)
	}
	a.done <- nil // for Cleanup
	time.Sleep(time.Second)
	l.end()

	served := ledger.snapshot()
	waitReportedEqualsServed(t, double, served)
	// The last reports may still be settling in Redis; once nothing is
	// pending, nothing more can be reported: check the sums again.
	total := waitNothingPending(t, rdb, store.Keys{Prefix: cfg.Redis.Prefix})
	waitReportedEqualsServed(t, double, served)
	checkIdentifiersUnique(t, double)
	t.Logf("%d requests (%d failed at the client), %d units served and reported in %d meter events; %d Stripe requests, %d answered 'already exists'",
		l.sent.Load(), l.failed.Load(), total, len(double.MeterEvents()), len(double.Requests()), countStatus(double, http.StatusBadRequest))
}

// waitReportedEqualsServed waits until the accepted meter events add up,
// per customer, to exactly the units served.
func waitReportedEqualsServed(t *testing.T, d *testrig.StripeDouble, served map[string]int64) {
	t.Helper()
	testrig.WaitFor(t, 30*time.Second, func() error {
		got := make(map[string]int64)
		for _, e := range d.MeterEvents() {
			got[e.CustomerID] += e.Value
		}
		for cus, want := range served {
			if got[cus] != want {
				return fmt.Errorf("%s: reported %d, served %d (all reported: %v)", cus, got[cus], want, got)
			}
		}
		if len(got) != len(served) {
			return fmt.Errorf("reported customers %v; served %v", got, served)
		}
		return nil
	})
}

// waitNothingPending waits until Redis has nothing pending or parked and
// returns the units reported.
func waitNothingPending(t *testing.T, rdb *redis.Client, keys store.Keys) int64 {
	t.Helper()
	var total int64
	testrig.WaitFor(t, 10*time.Second, func() error {
		u, err := meter.ReadUsage(context.Background(), rdb, keys)
		if err != nil {
			return err
		}
		total = 0
		var pending, parked int64
		for _, row := range u.Rows {
			total += row.Reported
			pending += row.Pending
			parked += row.Parked
		}
		if pending != 0 || parked != 0 {
			return fmt.Errorf("redis: %d pending, %d parked; want 0 and 0", pending, parked)
		}
		return nil
	})
	return total
}

func checkIdentifiersUnique(t *testing.T, d *testrig.StripeDouble) {
	t.Helper()
	if twice := d.AcceptedTwice(); len(twice) > 0 {
		t.Errorf("identifiers accepted twice: %v", twice)
	}
	for _, e := range d.MeterEvents() {
		if !strings.HasPrefix(e.Identifier, "tg-"+e.CustomerID+"-calls-") {
			t.Errorf("identifier %s does not name its customer and meter", e.Identifier)
		}
	}
}

func countStatus(d *testrig.StripeDouble, status int) int {
	n := 0
	for _, r := range d.Requests() {
		if r.Status == status {
			n++
		}
	}
	return n
}
