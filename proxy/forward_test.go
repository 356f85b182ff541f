package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/logging"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

var spoofHeaders = []string{
	"X-Tollgate-User: evil",
	"x-tollgate-customer: cus_evil",
	"X_Tollgate_Plan: enterprise",
	"X.Tollgate.Status: active",
	"X-TOLLGATE-FEATURES: everything",
	"X-Tollgate-Usage: 0",
	"X-Tollgate-Anything: x",
}

func reservedIn(h http.Header) []string {
	var bad []string
	for k := range h {
		if IsReserved(k) {
			bad = append(bad, k+": "+strings.Join(h[k], ","))
		}
	}
	return bad
}

// GHSA-style identity spoofing: a client sets the headers the app trusts.
// Every reserved header is removed on every kind of route; only tollgate's
// own verified values reach the app.
func TestReservedHeadersStrippedOnEveryRoute(t *testing.T) {
	rig := newProxy(t, nil, nil)
	addr := rig.front.Listener.Addr().String()
	for _, c := range []struct {
		name, method, path string
		extra              []string
		wantUser           string
	}{
		{"public route", "GET", "/public/x", nil, ""},
		{"OPTIONS preflight", "OPTIONS", "/api/x", nil, ""},
		{"optional route, no token", "GET", "/optional/x", nil, ""},
		{"optional route, valid token", "GET", "/optional/x", []string{"Authorization: Bearer good:u1:cus_1"}, "u1"},
		{"required route, valid token", "GET", "/api/x", []string{"Authorization: Bearer good:u1:cus_1"}, "u1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := len(rig.backend.requests())
			resp := rawRequest(t, addr, c.method, c.path, append(c.extra, spoofHeaders...)...)
			if resp.StatusCode != 200 {
				t.Fatalf("%s %s = %d; want 200", c.method, c.path, resp.StatusCode)
			}
			got := rig.backend.requests()[before].Header
			if c.wantUser == "" {
				if bad := reservedIn(got); len(bad) > 0 {
					t.Errorf("backend saw reserved headers %v; want none", bad)
				}
				return
			}
			if got.Get(HeaderUser) != c.wantUser || got.Get(HeaderCustomer) != "cus_1" {
				t.Errorf("backend saw user %q customer %q; want verified %q cus_1", got.Get(HeaderUser), got.Get(HeaderCustomer), c.wantUser)
			}
			for k, v := range got {
				if IsReserved(k) && (len(v) != 1 || strings.Contains(v[0], "evil") || k != http.CanonicalHeaderKey(k)) {
					t.Errorf("backend saw spoofed %s: %v", k, v)
				}
			}
			if got.Get(HeaderPlan) != "" || got.Get(HeaderFeatures) != "" {
				t.Errorf("backend saw plan %q features %q; want none (no gate decided)", got.Get(HeaderPlan), got.Get(HeaderFeatures))
			}
		})
	}
}

// Denials and tollgate's own endpoints see stripped headers too.
func TestReservedHeadersStrippedBeforeMountsAndDenials(t *testing.T) {
	var mounted http.Header
	rig := newProxy(t, func(c *config.Config, o *Options) {
		o.Mounts = []Mount{{Path: "/_tollgate/hook", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mounted = r.Header.Clone()
		})}}
		c.Routes = []*config.Route{{Path: "/only/**", Auth: config.AuthNone}}
	}, nil)
	addr := rig.front.Listener.Addr().String()
	if resp := rawRequest(t, addr, "POST", "/_tollgate/hook", spoofHeaders...); resp.StatusCode != 200 {
		t.Fatalf("mount answered %d", resp.StatusCode)
	}
	if bad := reservedIn(mounted); len(bad) > 0 {
		t.Errorf("mounted handler saw reserved headers %v", bad)
	}
	resp := rawRequest(t, addr, "GET", "/elsewhere", spoofHeaders...)
	if resp.StatusCode != 403 || errorCode(t, resp) != "no_route" {
		t.Errorf("no route = %d; want 403 no_route", resp.StatusCode)
	}
	if bad := reservedIn(resp.Header); len(bad) > 0 {
		t.Errorf("denial echoed reserved headers %v", bad)
	}
}

// RFC 7230 §6.1 abuse: "Connection: X-Tollgate-User" asks a proxy to drop a
// header as hop-by-hop; it must not remove what tollgate sets.
func TestConnectionHeaderCannotRemoveTollgateHeaders(t *testing.T) {
	rig := newProxy(t, nil, nil)
	resp := rawRequest(t, rig.front.Listener.Addr().String(), "GET", "/api/x",
		"Authorization: Bearer good:u1:cus_1", "Connection: X-Tollgate-User, X-Tollgate-Customer, X-Request-Id, X-Forwarded-For")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := rig.backend.requests()[0].Header
	for _, k := range []string{HeaderUser, HeaderCustomer, HeaderRequestID, "X-Forwarded-For"} {
		if got.Get(k) == "" {
			t.Errorf("backend lacks %s: a client Connection header removed it", k)
		}
	}
}

func TestXForwardedRebuilt(t *testing.T) {
	for _, c := range []struct {
		name       string
		trusted    []string
		wantFor    string
		wantProto  string
		wantRealIP string
	}{
		{"untrusted peer: replaced", nil, "127.0.0.1", "http", ""},
		{"trusted peer: kept and extended", []string{"127.0.0.0/8"}, "203.0.113.9, 127.0.0.1", "https", "203.0.113.9"},
		{"other CIDR trusted only", []string{"10.0.0.0/8"}, "127.0.0.1", "http", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			rig := newProxy(t, func(cfg *config.Config, _ *Options) { cfg.TrustedProxies = c.trusted }, nil)
			resp := rawRequest(t, rig.front.Listener.Addr().String(), "GET", "/public/x",
				"X-Forwarded-For: 203.0.113.9", "X-Forwarded-Proto: https", "X-Real-Ip: 203.0.113.9")
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			h := rig.backend.requests()[0].Header
			if got := h.Get("X-Forwarded-For"); got != c.wantFor {
				t.Errorf("X-Forwarded-For = %q; want %q", got, c.wantFor)
			}
			if got := h.Get("X-Forwarded-Proto"); got != c.wantProto {
				t.Errorf("X-Forwarded-Proto = %q; want %q", got, c.wantProto)
			}
			if got := h.Get("X-Real-Ip"); got != c.wantRealIP {
				t.Errorf("X-Real-Ip = %q; want %q", got, c.wantRealIP)
			}
			if got := h.Get("X-Forwarded-Host"); got != "app.example" {
				t.Errorf("X-Forwarded-Host = %q; want app.example", got)
			}
		})
	}
}

func TestRequestID(t *testing.T) {
	rig := newProxy(t, nil, nil)
	addr := rig.front.Listener.Addr().String()
	for _, c := range []struct {
		name, header string
		keep         bool
	}{
		{"generated when absent", "", false},
		{"kept when well formed", "X-Request-Id: abc-123.def", true},
		{"replaced when malformed", "X-Request-Id: has spaces and <html>", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := len(rig.backend.requests())
			var hs []string
			if c.header != "" {
				hs = append(hs, c.header)
			}
			resp := rawRequest(t, addr, "GET", "/public/x", hs...)
			sent := strings.TrimPrefix(c.header, "X-Request-Id: ")
			got := resp.Header.Get(HeaderRequestID)
			backend := rig.backend.requests()[before].Header.Get(HeaderRequestID)
			if got != backend || !ValidRequestID(got) {
				t.Errorf("client got id %q, backend %q; want the same valid id", got, backend)
			}
			if (got == sent) != c.keep {
				t.Errorf("id %q, sent %q; keep = %v", got, sent, c.keep)
			}
		})
	}
}

func TestAuthModes(t *testing.T) {
	rig := newProxy(t, nil, nil)
	addr := rig.front.Listener.Addr().String()
	for _, c := range []struct {
		name, path, token string
		want              int
	}{
		{"required, no token", "/api/x", "", 401},
		{"required, bad token", "/api/x", "Bearer nope", 401},
		{"required, good token", "/api/x", "Bearer good:u:cus_1", 200},
		{"optional, no token", "/optional/x", "", 200},
		{"optional, bad token still refused", "/optional/x", "Bearer nope", 401},
		{"none, bad token ignored", "/public/x", "Bearer nope", 200},
		{"require without a gate fails closed", "/paid/x", "Bearer good:u:cus_1", 503},
	} {
		t.Run(c.name, func(t *testing.T) {
			var hs []string
			if c.token != "" {
				hs = append(hs, "Authorization: "+c.token)
			}
			resp := rawRequest(t, addr, "GET", c.path, hs...)
			if resp.StatusCode != c.want {
				t.Fatalf("GET %s with %q = %d; want %d", c.path, c.token, resp.StatusCode, c.want)
			}
			if c.want == 401 {
				if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
					t.Errorf("WWW-Authenticate = %q", got)
				}
				if code := errorCode(t, resp); code != "unauthenticated" {
					t.Errorf("code = %q; want unauthenticated", code)
				}
			}
		})
	}
	if resp := rawRequest(t, addr, "DELETE", "/other"); resp.StatusCode != 403 {
		t.Errorf("DELETE on a GET/POST-only route = %d; want 403 no_route", resp.StatusCode)
	}
}

func TestForwardAuthorizationConfigurable(t *testing.T) {
	for _, fwd := range []bool{true, false} {
		rig := newProxy(t, func(c *config.Config, _ *Options) {
			c.Auth.JWT.ForwardAuthorization, c.Auth.JWT.Cookie = &fwd, "session_jwt"
		}, nil)
		rawRequest(t, rig.front.Listener.Addr().String(), "GET", "/api/x", "Authorization: Bearer good:u:cus_1",
			"Cookie: theme=dark; session_jwt=a.b.c; lang=en")
		h := rig.backend.requests()[0].Header
		if got := h.Get("Authorization") != ""; got != fwd {
			t.Errorf("forward_authorization=%v: backend got Authorization = %v", fwd, got)
		}
		wantCookie := "theme=dark; lang=en"
		if fwd {
			wantCookie = "theme=dark; session_jwt=a.b.c; lang=en"
		}
		if got := h.Get("Cookie"); got != wantCookie {
			t.Errorf("forward_authorization=%v: backend got Cookie %q; want %q", fwd, got, wantCookie)
		}
	}
}

func TestUpstreamDown(t *testing.T) {
	rig := newProxy(t, nil, nil)
	rig.backend.Close()
	resp := rawRequest(t, rig.front.Listener.Addr().String(), "GET", "/public/x")
	if resp.StatusCode != 502 || errorCode(t, resp) != "upstream_unavailable" {
		t.Errorf("upstream down = %d; want 502 upstream_unavailable", resp.StatusCode)
	}
	if got := testutil.ToFloat64(rig.metrics.Requests.WithLabelValues("/public/**", "upstream_error")); got != 1 {
		t.Errorf("requests_total{decision=upstream_error} = %v; want 1", got)
	}
}

func TestUpstreamReservedResponseHeadersRemoved(t *testing.T) {
	rig := newProxy(t, nil, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Tollgate-Usage", "5")
		w.Header().Set("X-Tollgate-Internal", "secret")
		w.Header().Set("X-App", "kept")
	})
	resp := rawRequest(t, rig.front.Listener.Addr().String(), "GET", "/public/x")
	if bad := reservedIn(resp.Header); len(bad) > 0 {
		t.Errorf("client saw %v; want reserved response headers removed", bad)
	}
	if resp.Header.Get("X-App") != "kept" {
		t.Errorf("X-App = %q; want kept", resp.Header.Get("X-App"))
	}
}

func TestMetricsCountDecisions(t *testing.T) {
	rig := newProxy(t, nil, nil)
	addr := rig.front.Listener.Addr().String()
	rawRequest(t, addr, "GET", "/api/x", "Authorization: Bearer good:u:cus_1")
	rawRequest(t, addr, "GET", "/api/x")
	rawRequest(t, addr, "GET", "/api/%2e%2e%2fadmin")
	for _, c := range []struct {
		route, decision string
		want            float64
	}{
		{"api", "allowed", 1},
		{"api", "unauthenticated", 1},
		{"-", "bad_request", 1},
	} {
		if got := testutil.ToFloat64(rig.metrics.Requests.WithLabelValues(c.route, c.decision)); got != c.want {
			t.Errorf("requests_total{route=%q,decision=%q} = %v; want %v", c.route, c.decision, got, c.want)
		}
	}
	// One duration series per route label and "-", each from start: the
	// request paths never become labels.
	if n, want := testutil.CollectAndCount(rig.metrics.RequestDuration), len(testRoutes)+1; n != want {
		t.Errorf("request_duration_seconds has %d series; want %d (one per route, and -)", n, want)
	}
}

// Server-sent events must reach the client as they are written, not when
// the upstream finishes: the backend holds the stream open until the client
// has read the first event.
func TestStreamingIsFlushed(t *testing.T) {
	release := make(chan struct{})
	rig := newProxy(t, nil, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		io.WriteString(w, "data: second\n\n")
	})
	resp, err := http.Get(rig.front.URL + "/public/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("first event = %q, %v; want it before the stream ends", line, err)
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "data: second") {
		t.Errorf("rest = %q; want the second event", rest)
	}
}

func TestWebSocketUpgradePassesThrough(t *testing.T) {
	rig := newProxy(t, nil, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		line, _ := brw.ReadString('\n')
		io.WriteString(conn, "echo "+line)
	})
	conn, err := net.Dial("tcp", rig.front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /public/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade = %v, %v; want 101", resp, err)
	}
	io.WriteString(conn, "hello\n")
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := br.ReadString('\n')
	if err != nil || got != "echo hello\n" {
		t.Errorf("frame = %q, %v; want echo hello", got, err)
	}
}

// Every line logged while serving a request names it.
func TestEveryLogLineCarriesTheRequestID(t *testing.T) {
	var buf testrig.LogBuffer
	rig := newProxy(t, func(c *config.Config, o *Options) {
		o.Logger = logging.New(config.Log{Level: "debug", Format: "json"}, &buf)
	}, nil)
	rig.backend.Close() // upstream failure: a warn line, then the access line
	rawRequest(t, rig.front.Listener.Addr().String(), "GET", "/public/x", "X-Request-Id: trace-77")
	rawRequest(t, rig.front.Listener.Addr().String(), "GET", "/api/x", "X-Request-Id: trace-78", "Authorization: Bearer nope")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) < 4 {
		t.Fatalf("got %d log lines; want at least 4:\n%s", len(lines), buf.String())
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		if id, _ := m["request_id"].(string); id != "trace-77" && id != "trace-78" {
			t.Errorf("line without the request id: %s", l)
		}
	}
}

// CWE-178 on methods: with methods: [GET, POST] on the stricter route, a
// lower-case method or HEAD must not fall through to a looser route.
func TestMethodVariantsCannotSkipARoute(t *testing.T) {
	rig := newProxy(t, func(c *config.Config, _ *Options) {
		c.Routes = []*config.Route{
			{Path: "/admin/**", Methods: []string{"GET", "POST"}, Auth: config.AuthRequired},
			{Path: "/**", Auth: config.AuthNone},
		}
	}, nil)
	addr := rig.front.Listener.Addr().String()
	for _, c := range []struct {
		method string
		want   int
	}{
		{"GET", 401}, {"HEAD", 401}, {"POST", 401},
		{"get", 400}, {"Get", 400}, {"post", 400},
		{"PUT", 200}, // not listed: the looser route, as configured
	} {
		resp := rawRequest(t, addr, c.method, "/admin/x")
		if resp.StatusCode != c.want {
			t.Errorf("%s /admin/x = %d; want %d", c.method, resp.StatusCode, c.want)
		}
	}
}

// Reserved headers must not reach the client through 103 Early Hints or
// response trailers either.
func TestReservedHeadersNotLeakedIn1xxOrTrailers(t *testing.T) {
	rig := newProxy(t, nil, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Tollgate-Usage", "9")
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("X-Tollgate-Usage")
		w.Header().Del("Link")
		w.Header().Set("Trailer", "X-Tollgate-Internal, X-App-Trailer")
		w.WriteHeader(200)
		io.WriteString(w, "body")
		w.Header().Set("X-Tollgate-Internal", "secret")
		w.Header().Set("X-App-Trailer", "kept")
	})
	conn, err := net.Dial("tcp", rig.front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /public/x HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n")
	raw, _ := io.ReadAll(conn)
	got := string(raw)
	if !strings.Contains(got, "103 Early Hints") || !strings.Contains(got, "kept") {
		t.Fatalf("response lacks the early hint or the app trailer:\n%s", got)
	}
	if strings.Contains(strings.ToLower(got), "x-tollgate") {
		t.Errorf("a reserved header leaked to the client:\n%s", got)
	}
}

// For an untrusted peer, setIdentity sets exactly the X-Forwarded-* that
// httputil.ProxyRequest.SetXForwarded would (it replaced that call, for
// its allocations), whatever the peer's address, host and scheme.
func TestForwardedIsSetXForwarded(t *testing.T) {
	for _, remote := range []string{"203.0.113.9:4711", "[2001:db8::1]:443", "[::ffff:10.0.0.1]:80", "no-port", ""} {
		for _, host := range []string{"app.example", "app.example:8443", ""} {
			for _, tls := range []*tls.ConnectionState{nil, {}} {
				in := httptest.NewRequest("GET", "http://x/", nil)
				in.RemoteAddr, in.Host, in.TLS = remote, host, tls
				want := &httputil.ProxyRequest{In: in, Out: in.Clone(context.Background())}
				want.Out.Header = http.Header{"Accept": {"*/*"}}
				want.SetXForwarded()
				got := http.Header{"Accept": {"*/*"}}
				(&exchange{rid: "r"}).setIdentity(got, in, true)
				delete(got, HeaderRequestID)
				if !reflect.DeepEqual(got, want.Out.Header) {
					t.Errorf("remote %q host %q tls %v: setIdentity set %v; SetXForwarded sets %v", remote, host, tls != nil, got, want.Out.Header)
				}
			}
		}
	}
}
