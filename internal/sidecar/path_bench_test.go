package sidecar

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/internal/logging"
	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/proxy"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// The benchmarks of this file put tollgate's own cost per request apart
// from the network's and the upstream's (issue 13): the request never
// leaves the process, the upstream is an in-memory transport answering
// 100 bytes, and bare is httputil.ReverseProxy on the same transport, so
// tollgate minus bare is what tollgate adds. The setup is the one of
// scripts/bench-compare.sh: an RS256 token from a JWKS, no customer
// claim (the user's link is read from Redis, then cached), a gated and
// metered route whose plan limits the meter (a quota reservation).
//
//	go test -run '^$' -bench 'ServeHTTP|InProcessPath' -benchmem ./internal/sidecar/

// benchAnswer is the upstream's 100-byte body.
var benchAnswer = bytes.Repeat([]byte("x"), 100)

// answerTransport is an upstream that answers at once, from memory.
type answerTransport struct{}

func (answerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"text/plain"}, "Content-Length": {"100"}},
		Body:          io.NopCloser(bytes.NewReader(benchAnswer)),
		ContentLength: int64(len(benchAnswer)), Request: r}, nil
}

// discardWriter is a ResponseWriter that keeps nothing but the status.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

func (w *discardWriter) reset() {
	clear(w.h)
	w.code = 0
}

// benchRequest is what bench-compare sends.
func benchRequest(tok string) *http.Request {
	return &http.Request{Method: "GET", URL: &url.URL{Path: "/api/bench"}, RequestURI: "/api/bench",
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Host: "bench.invalid", RemoteAddr: "127.0.0.1:40000",
		Header: http.Header{"Authorization": {"Bearer " + tok}}, Body: http.NoBody}
}

// benchSidecar is a tollgate on route, logging JSON at level to
// io.Discard, with a subscribed customer and a linked user; it returns
// the user's RS256 token.
func benchSidecar(b *testing.B, route *config.Route, level string) (*Sidecar, string) {
	b.Helper()
	key, jwksURL := jwksServer(b)
	sc := startBenchSidecar(b, route, level, func(cfg *config.Config) {
		cfg.Auth.JWT.Algorithms, cfg.Auth.JWT.JWKSURL = []string{"RS256"}, jwksURL
	})
	subscribeBench(b, sc, "user_bench", "cus_bench")
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, benchClaims("user_bench"))
	t.Header["kid"] = "k1"
	tok, err := t.SignedString(key)
	if err != nil {
		b.Fatal(err)
	}
	return sc, tok
}

// startBenchSidecar starts a tollgate as bench-compare runs it, on a
// Redis of its own, with tune applied to the configuration.
func startBenchSidecar(b *testing.B, route *config.Route, level string, tune func(*config.Config)) *Sidecar {
	b.Helper()
	rd := testrig.StartRedis(b, testrig.WithoutPersistence())
	cfg := config.Default()
	cfg.Upstream = "http://127.0.0.1:1" // never dialled: Transport answers
	cfg.Redis.URL = rd.URL()
	cfg.Stripe.TrustedPayloads, cfg.Stripe.WebhookSecrets = true, []string{"whsec_bench"}
	cfg.Auth.JWT.Audience = []string{"api"}
	cfg.Plans = map[string]*config.Plan{"bench": {Prices: []string{"price_bench"}, Features: []string{"bench"},
		Limits: map[string]int64{"api_calls": 1e12}}}
	cfg.Metering.Meters = map[string]*config.Meter{"api_calls": {EventName: "api_calls"}}
	cfg.Routes = []*config.Route{route}
	tune(cfg)
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	log := logging.New(config.Log{Level: level, Format: "json"}, io.Discard)
	sc, err := New(context.Background(), cfg, Options{Logger: log, Transport: answerTransport{}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(func() {
		cancel()
		sc.close()
	})
	go sc.Gate.Run(ctx)
	testrig.Eventually(b, "gate live and token keys loaded", func() bool { return sc.Gate.Live() && sc.verifier.Ready() })
	return sc
}

// subscribeBench stores an active subscription to the bench plan for
// customer and links user to it.
func subscribeBench(b *testing.B, sc *Sidecar, user, customer string) {
	ctx := context.Background()
	now := time.Now()
	err := sc.Customers.Update(ctx, customer, func(*entitlements.State) (*entitlements.State, error) {
		return &entitlements.State{Customer: customer, Subscriptions: []entitlements.Subscription{{ID: "sub_" + customer,
			Status: "active", Prices: []string{"price_bench"}, CurrentPeriodStart: now.Add(-time.Hour),
			CurrentPeriodEnd: now.Add(30 * 24 * time.Hour)}}}, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := sc.Customers.LinkUser(ctx, user, customer); err != nil {
		b.Fatal(err)
	}
}

// benchClaims are a token's claims without a customer claim: the
// customer comes from the user's link.
func benchClaims(user string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"sub": user, "aud": "api", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

var (
	gatedRoute  = &config.Route{Path: "/api/**", Require: config.Require{Features: []string{"bench"}}, Meter: "api_calls"}
	publicRoute = &config.Route{Path: "/api/**", Auth: config.AuthNone}
)

// BenchmarkServeHTTP is one request through the whole handler, per
// target: bare is the baseline, the others are tollgate (full path, full
// path with the access log filtered out, and an auth: none route).
func BenchmarkServeHTTP(b *testing.B) {
	up, _ := url.Parse("http://127.0.0.1:1")
	bare := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(up); pr.Out.Host = pr.In.Host; pr.SetXForwarded() },
		Transport: answerTransport{},
	}
	b.Run("bare", func(b *testing.B) { serveLoop(b, bare, "a.b.c") })
	for _, tt := range []struct {
		name, level string
		route       *config.Route
	}{
		{"tollgate", "info", gatedRoute},
		{"tollgate-nolog", "warn", gatedRoute},
		{"tollgate-public", "info", publicRoute},
	} {
		b.Run(tt.name, func(b *testing.B) {
			sc, tok := benchSidecar(b, tt.route, tt.level)
			serveLoop(b, sc.handler, tok)
		})
	}
}

func serveLoop(b *testing.B, h http.Handler, tok string) {
	w := &discardWriter{h: http.Header{}}
	h.ServeHTTP(w, benchRequest(tok)) // caches: token, link, customer, quota share
	if w.code != http.StatusOK {
		b.Fatalf("status %d", w.code)
	}
	b.ReportAllocs()
	for b.Loop() {
		w.reset()
		h.ServeHTTP(w, benchRequest(tok))
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
}

// BenchmarkInProcessPath is what tollgate does on top of proxying, as the
// proxy calls it: the token from the cache (and the user's link), the
// entitlement decision, the quota reservation, the count and the
// settlement. -benchmem shows its allocations.
func BenchmarkInProcessPath(b *testing.B) {
	sc, tok := benchSidecar(b, gatedRoute, "info")
	step := inProcessPath(sc)
	r := benchRequest(tok)
	if err := step(r); err != nil {
		b.Fatal(err)
	}
	benchBarrier(b)
	b.ReportAllocs()
	for b.Loop() {
		if err := step(r); err != nil {
			b.Fatal(err)
		}
	}
}

// inProcessPath returns the steps of BenchmarkInProcessPath for a request.
func inProcessPath(sc *Sidecar) func(r *http.Request) error {
	ctx := context.Background()
	gate := gateAdapter{g: sc.Gate, limited: limitedMeters(sc.cfg.Plans)}
	quota := quotaAdapter{q: sc.quotas, now: time.Now, soon: time.Second}
	counter := counterAdapter{sc.meter}
	return func(r *http.Request) error {
		id, err := sc.verifier.Authenticate(r)
		if err != nil {
			return err
		}
		d, herr := gate.Decide(ctx, gatedRoute, id)
		if herr != nil {
			return herr
		}
		h, err := quota.Reserve(ctx, proxy.Claim{Customer: id.Customer, Meter: "api_calls", Units: 1, Limit: d.Limit, Memo: id.Memo})
		if err != nil {
			return err
		}
		counter.Count(id, "api_calls", 1)
		h.Settle(1, 1)
		return nil
	}
}

// BenchmarkCachedPathScale is the in-process path with n users, each with
// a token and a customer of their own, all cached (tokens, links,
// customers, quota shares): its cost must not grow with n, up to the
// default gating.cache_size of 100,000. Requests go round the users in a
// stride, so consecutive ones touch different entries. Tokens are HS256
// here only because signing 100,000 RS256 tokens takes minutes; a cache
// hit does not look at the algorithm. The periodic refresh, quota sync
// and flush are slowed down so that their work on n customers does not
// land in the measurement (they are background work, not the path).
//
//	go test -run '^$' -bench CachedPathScale -benchmem ./internal/sidecar/
func BenchmarkCachedPathScale(b *testing.B) {
	secret := []byte(strings.Repeat("s", 32))
	for _, n := range []int{1, 1000, 100_000} {
		b.Run(fmt.Sprintf("cached=%d", n), func(b *testing.B) {
			sc := startBenchSidecar(b, gatedRoute, "info", func(cfg *config.Config) {
				cfg.Auth.JWT.Algorithms, cfg.Auth.JWT.HMACSecret = []string{"HS256"}, string(secret)
				cfg.Auth.JWT.CacheSize, cfg.Gating.CacheSize = 2*n+100, 2*n+100
				cfg.Gating.RefreshInterval = 0
				cfg.Metering.FlushInterval = 20 * time.Second
				cfg.Metering.Quota.SyncInterval, cfg.Metering.Quota.LeaseTTL = 3*time.Minute, 10*time.Minute
			})
			reqs := make([]*http.Request, n)
			step := inProcessPath(sc)
			parallel(b, n, func(i int) error {
				user := fmt.Sprintf("user_%d", i)
				subscribeBench(b, sc, user, fmt.Sprintf("cus_%d", i))
				tok, err := auth.SignHS256(secret, benchClaims(user))
				reqs[i] = benchRequest(tok)
				return err
			})
			parallel(b, n, func(i int) error {
				return step(reqs[i]) // verifies, reads the link and the customer, takes the share
			})
			// Links are cached for 30s (auth.DefaultLinkTTL), less than the
			// passes above take for 100,000 users here: read every link
			// again, so that none expires during the measurement.
			parallel(b, n, func(i int) error {
				sc.verifier.InvalidateUser(fmt.Sprintf("user_%d", i))
				_, err := sc.verifier.Authenticate(reqs[i])
				return err
			})
			runtime.GC() // the setup's garbage is not the path's
			benchBarrier(b)
			b.ReportAllocs()
			// A request's own bytes have just arrived from the network, so
			// they are in the CPU's cache when tollgate reads them; what is
			// cold is tollgate's state for its user. Before each batch of
			// requests, with the timer stopped, read the batch's requests
			// (not tollgate's entries for them), so that the measurement
			// is of tollgate's lookups and not of the benchmark's inputs.
			const batch = 64
			i, next, left := 0, 0, 0
			for b.Loop() {
				if left == 0 {
					b.StopTimer()
					for range batch {
						warmSink += warm(reqs[next])
						next = (next + 7919) % n
					}
					left = batch
					b.StartTimer()
				}
				left--
				if err := step(reqs[i]); err != nil {
					b.Fatal(err)
				}
				i = (i + 7919) % n
			}
		})
	}
}

var warmSink int

// warm reads what a request's parsing would have brought into the CPU's
// cache: its header map and the bytes of its token.
func warm(r *http.Request) int {
	s, n := r.Header.Get("Authorization"), 0
	for i := 0; i < len(s); i++ {
		n += int(s[i])
	}
	return n + len(r.URL.Path) + len(r.Method)
}

// parallel runs fn for 0..n-1 on a few goroutines and fails b on the
// first error.
func parallel(b *testing.B, n int, fn func(i int) error) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range min(n, 32) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := fn(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// benchBarrier holds a benchmark between its setup and its measured loop
// while scripts/bench-ab.sh runs two builds at once, so that the two loops
// run together whatever their setups took: with TOLLGATE_BENCH_BARRIER set
// to a directory, it writes ready.<pid> there and waits for a file named
// go. Without it, it does nothing.
func benchBarrier(b *testing.B) {
	dir := os.Getenv("TOLLGATE_BENCH_BARRIER")
	if dir == "" {
		return
	}
	b.StopTimer()
	defer b.StartTimer()
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("ready.%d", os.Getpid())), nil, 0o600); err != nil {
		b.Fatalf("bench barrier: %v", err)
	}
	deadline := time.Now().Add(30 * time.Minute)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go")); err == nil {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("bench barrier: no %s/go after 30 minutes", dir)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
