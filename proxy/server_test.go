package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// seen is what the echo backend received for one request.
type seen struct {
	Method     string
	RequestURI string
	Header     http.Header
	RemoteAddr string
}

// echoBackend is the application stand-in: it records every request and
// answers with it as JSON, so tests assert on what the app really saw.
type echoBackend struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seen
}

func newEchoBackend(t *testing.T, extra http.HandlerFunc) *echoBackend {
	t.Helper()
	b := &echoBackend{}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := seen{Method: r.Method, RequestURI: r.RequestURI, Header: r.Header.Clone(), RemoteAddr: r.RemoteAddr}
		b.mu.Lock()
		b.reqs = append(b.reqs, s)
		b.mu.Unlock()
		if extra != nil {
			extra(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s)
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *echoBackend) requests() []seen {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]seen(nil), b.reqs...)
}

// stubAuth stands in for the JWT verifier (tested in proxy/auth): the token
// "good:<user>:<customer>" is valid, anything else is not.
type stubAuth struct{}

func (stubAuth) Authenticate(r *http.Request) (auth.Identity, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return auth.Identity{}, auth.ErrNoCredentials
	}
	parts := strings.Split(strings.TrimPrefix(h, "Bearer "), ":")
	if len(parts) != 3 || parts[0] != "good" {
		return auth.Identity{}, &auth.Error{Reason: auth.ReasonMalformed, Err: errors.New("stub: bad token")}
	}
	return auth.Identity{User: parts[1], Customer: parts[2]}, nil
}

// testRoutes: /admin/** is the guarded area every hostile path tries to reach.
var testRoutes = []*config.Route{
	{Path: "/public/**", Auth: config.AuthNone},
	{Path: "/optional/**", Auth: config.AuthOptional},
	{Path: "/admin/**", Auth: config.AuthRequired},
	{Path: "/paid/**", Require: config.Require{Subscription: true}},
	{Path: "/api/**", Methods: []string{"OPTIONS"}, Auth: config.AuthNone},
	{Name: "api", Path: "/api/**"},
	{Path: "/**", Methods: []string{"GET", "POST"}, Auth: config.AuthNone},
}

// guardedRoutes: everything is public except /admin/**.
var guardedRoutes = []*config.Route{
	{Path: "/admin/**", Auth: config.AuthRequired},
	{Path: "/**", Auth: config.AuthNone},
}

type proxyRig struct {
	backend *echoBackend
	front   *httptest.Server
	metrics *metrics.Metrics
	// served counts requests the proxy has finished with (after every
	// deferred step, also when the handler panicked).
	served atomic.Int32
	// cut cancels the context every request is served under
	// (http.Server.BaseContext), as the sidecar does at shutdown.
	cut context.CancelCauseFunc
}

func newProxy(t *testing.T, mutate func(*config.Config, *Options), backendFn http.HandlerFunc) *proxyRig {
	t.Helper()
	b := newEchoBackend(t, backendFn)
	cfg := config.Default()
	cfg.Upstream = b.URL
	cfg.Routes = testRoutes
	m := metrics.New()
	o := Options{Config: cfg, Authenticator: stubAuth{}, Metrics: m,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if mutate != nil {
		mutate(cfg, &o)
	}
	s, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	rig := &proxyRig{backend: b, metrics: m}
	rig.front = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer rig.served.Add(1)
		s.ServeHTTP(w, r)
	}))
	base, cut := context.WithCancelCause(context.Background())
	rig.cut = cut
	t.Cleanup(func() { cut(nil) })
	rig.front.Config.BaseContext = func(net.Listener) context.Context { return base }
	rig.front.Start()
	t.Cleanup(rig.front.Close)
	return rig
}

// rawRequest sends a request line exactly as given, bypassing the Go
// client's URL handling, and returns the parsed response.
func rawRequest(t *testing.T, addr, method, target string, headers ...string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: app.example\r\n", method, target)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %q: read response: %v", method, target, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func errorCode(t *testing.T, resp *http.Response) string {
	t.Helper()
	var body struct {
		Error struct{ Code, Message string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("error body is not the SPEC's JSON shape: %v", err)
	}
	return body.Error.Code
}

// TestHostilePathsEndToEnd replays every case of the normaliser's attack
// table through a real proxy: a rejected path never reaches the app, and an
// accepted one reaches it exactly as normalised, which is the path that was
// matched (so /admin/** is never reached without a token).
func TestHostilePathsEndToEnd(t *testing.T) {
	rig := newProxy(t, func(c *config.Config, _ *Options) { c.Routes = guardedRoutes }, nil)
	addr := rig.front.Listener.Addr().String()
	admin, _ := CompilePattern("/admin/**")
	for _, c := range hostilePaths {
		t.Run(c.name, func(t *testing.T) {
			before := len(rig.backend.requests())
			resp := rawRequest(t, addr, "GET", c.in)
			after := rig.backend.requests()
			if c.wantErr {
				if resp.StatusCode != http.StatusBadRequest {
					t.Errorf("GET %q = %d; want 400", c.in, resp.StatusCode)
				}
				if len(after) != before {
					t.Errorf("GET %q reached the backend as %q; want it rejected", c.in, after[len(after)-1].RequestURI)
				}
				return
			}
			if admin.Match(c.want) {
				if resp.StatusCode != http.StatusUnauthorized || len(after) != before {
					t.Errorf("GET %q (normalised %q) = %d, forwarded=%v; want 401 and not forwarded", c.in, c.want, resp.StatusCode, len(after) != before)
				}
				return
			}
			if resp.StatusCode != http.StatusOK || len(after) != before+1 {
				t.Fatalf("GET %q = %d, backend requests %d→%d; want 200 and one forwarded", c.in, resp.StatusCode, before, len(after))
			}
			got, _, _ := strings.Cut(after[len(after)-1].RequestURI, "?")
			if got != c.want {
				t.Errorf("GET %q: backend saw path %q; want %q (the matched path)", c.in, got, c.want)
			}
		})
	}
}

// FuzzForwardedPathIsMatchedPath checks the invariant behind the table for
// any input: whatever is forwarded is exactly NormalizePath(input), and a
// path under /admin is never forwarded without credentials.
func FuzzForwardedPathIsMatchedPath(f *testing.F) {
	for _, c := range hostilePaths {
		f.Add(c.in)
	}
	var got string
	cfg := config.Default()
	cfg.Upstream = "http://backend.invalid"
	cfg.Routes = guardedRoutes
	s, err := New(Options{Config: cfg, Authenticator: stubAuth{}, Metrics: metrics.New(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			got = r.URL.EscapedPath()
			return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
		})})
	if err != nil {
		f.Fatal(err)
	}
	admin, _ := CompilePattern("/admin/**")
	f.Fuzz(func(t *testing.T, target string) {
		got = ""
		r := httptest.NewRequest("GET", "/", nil)
		r.RequestURI = target
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		want, err := NormalizePath(target)
		switch {
		case err != nil && (w.Code != 400 || got != ""):
			t.Fatalf("%q: NormalizePath fails but proxy answered %d and forwarded %q", target, w.Code, got)
		case got == "":
			return
		case got != want:
			t.Fatalf("%q: forwarded %q; matched %q", target, got, want)
		case admin.Match(got):
			t.Fatalf("%q: forwarded %q under /admin without credentials", target, got)
		}
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
