package proxy

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// mountCall is what a mounted handler saw of one request.
type mountCall struct {
	Path   string
	Header http.Header
	ID     auth.Identity
	HasID  bool // auth.FromContext's ok
}

// recordingMount is a mounted handler (the billing API or the webhook
// stand-in) that records every request it is handed and answers 200.
type recordingMount struct {
	mu    sync.Mutex
	calls []mountCall
}

func (m *recordingMount) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, ok := auth.FromContext(r.Context())
	m.mu.Lock()
	m.calls = append(m.calls, mountCall{Path: r.URL.Path, Header: r.Header.Clone(), ID: id, HasID: ok})
	m.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"mounted":true}`))
}

func (m *recordingMount) seen() []mountCall {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]mountCall(nil), m.calls...)
}

// TestAuthenticatedMounts runs the mounts the sidecar builds (the billing
// API as a prefix mount with Auth, the Stripe webhook as an exact mount
// without) in front of the echo backend, with the routes of the other
// proxy tests (whose last route forwards any GET or POST without a token),
// and checks who serves each request and which identity the mount gets.
func TestAuthenticatedMounts(t *testing.T) {
	billing, hook := &recordingMount{}, &recordingMount{}
	rig := newProxy(t, func(_ *config.Config, o *Options) {
		o.Mounts = []Mount{
			{Path: "/_tollgate/billing", Prefix: true, Handler: billing, Auth: true},
			{Path: "/_tollgate/stripe/webhook", Handler: hook},
		}
	}, nil)
	addr := rig.front.Listener.Addr().String()
	const (
		byBilling = "billing mount"
		byHook    = "webhook mount"
		byBackend = "backend"
		byProxy   = "tollgate's denial"
	)
	for _, c := range []struct {
		name, method, target string
		headers              []string
		wantStatus           int
		wantBy               string
		wantID               auth.Identity // the caller the mount gets, if any
	}{
		// (a) An Auth mount is an auth: required route: no token, no call.
		{name: "auth mount, no token", method: "POST", target: "/_tollgate/billing/checkout",
			wantStatus: http.StatusUnauthorized, wantBy: byProxy},
		{name: "auth mount root, no token", method: "GET", target: "/_tollgate/billing",
			wantStatus: http.StatusUnauthorized, wantBy: byProxy},
		{name: "auth mount, invalid token", method: "GET", target: "/_tollgate/billing/subscription",
			headers: []string{"Authorization: Bearer forged:u1:cus_1"}, wantStatus: http.StatusUnauthorized, wantBy: byProxy},
		// An identity header without a token is no identity either.
		{name: "auth mount, spoofed identity, no token", method: "GET", target: "/_tollgate/billing/subscription",
			headers: spoofHeaders, wantStatus: http.StatusUnauthorized, wantBy: byProxy},

		// (b) A valid token: the mount is called with the verified caller.
		{name: "auth mount, valid token", method: "POST", target: "/_tollgate/billing/checkout",
			headers: []string{"Authorization: Bearer good:u1:cus_1"}, wantStatus: http.StatusOK, wantBy: byBilling,
			wantID: auth.Identity{User: "u1", Customer: "cus_1"}},
		{name: "auth mount, valid token without a customer", method: "GET", target: "/_tollgate/billing/subscription",
			headers: []string{"Authorization: Bearer good:u2:"}, wantStatus: http.StatusOK, wantBy: byBilling,
			wantID: auth.Identity{User: "u2"}},
		// The mount matches the normalised path, like routes do.
		{name: "auth mount, dot segments", method: "GET", target: "/_tollgate/x/../billing/./invoices",
			headers: []string{"Authorization: Bearer good:u1:cus_1"}, wantStatus: http.StatusOK, wantBy: byBilling,
			wantID: auth.Identity{User: "u1", Customer: "cus_1"}},

		// (c) GHSA-style identity spoofing: the client names another
		// customer beside a valid token; the mount sees none of the
		// X-Tollgate-* headers, and the token's identity.
		{name: "auth mount, valid token and spoofed identity", method: "POST", target: "/_tollgate/billing/portal",
			headers:    append([]string{"Authorization: Bearer good:u1:cus_1"}, spoofHeaders...),
			wantStatus: http.StatusOK, wantBy: byBilling, wantID: auth.Identity{User: "u1", Customer: "cus_1"}},

		// (d) A mount without Auth (Stripe's webhook carries no token) is
		// called without one, and never with an identity, not even when a
		// valid token is sent.
		{name: "mount without auth, no token", method: "POST", target: "/_tollgate/stripe/webhook",
			wantStatus: http.StatusOK, wantBy: byHook},
		{name: "mount without auth, valid token", method: "POST", target: "/_tollgate/stripe/webhook",
			headers:    append([]string{"Authorization: Bearer good:u1:cus_1"}, spoofHeaders...),
			wantStatus: http.StatusOK, wantBy: byHook},

		// (e) A path that only starts with the mount's characters is not
		// under it: it goes on to the routes (here the public catch-all).
		{name: "mount path prefix, not a segment", method: "GET", target: "/_tollgate/billingX",
			wantStatus: http.StatusOK, wantBy: byBackend},
		{name: "mount path prefix, not a segment, deeper", method: "POST", target: "/_tollgate/billing-admin/checkout",
			wantStatus: http.StatusOK, wantBy: byBackend},
		{name: "exact mount, path below it", method: "POST", target: "/_tollgate/stripe/webhook/x",
			wantStatus: http.StatusOK, wantBy: byBackend},
		{name: "exact mount, longer name", method: "POST", target: "/_tollgate/stripe/webhookX",
			wantStatus: http.StatusOK, wantBy: byBackend},
	} {
		t.Run(c.name, func(t *testing.T) {
			nb, nh, nBackend := len(billing.seen()), len(hook.seen()), len(rig.backend.requests())
			resp := rawRequest(t, addr, c.method, c.target, c.headers...)
			if resp.StatusCode != c.wantStatus {
				t.Fatalf("%s %s = %d; want %d", c.method, c.target, resp.StatusCode, c.wantStatus)
			}
			var got []mountCall
			by := byProxy
			switch {
			case len(billing.seen()) > nb:
				by, got = byBilling, billing.seen()[nb:]
			case len(hook.seen()) > nh:
				by, got = byHook, hook.seen()[nh:]
			case len(rig.backend.requests()) > nBackend:
				by = byBackend
			}
			if by != c.wantBy {
				t.Fatalf("%s %s was served by %s; want %s", c.method, c.target, by, c.wantBy)
			}
			switch c.wantBy {
			case byProxy:
				if code := errorCode(t, resp); code != "unauthenticated" {
					t.Errorf("code = %q; want unauthenticated", code)
				}
				if h := resp.Header.Get("WWW-Authenticate"); h != `Bearer error="invalid_token"` {
					t.Errorf("WWW-Authenticate = %q; want %q", h, `Bearer error="invalid_token"`)
				}
			case byBackend:
				saw := rig.backend.requests()[nBackend]
				if path, _, _ := strings.Cut(saw.RequestURI, "?"); path != c.target {
					t.Errorf("backend saw %q; want %q", path, c.target)
				}
			case byBilling, byHook:
				if len(got) != 1 {
					t.Fatalf("the mount was called %d times; want once", len(got))
				}
				m := got[0]
				if want, _ := NormalizePath(c.target); m.Path != want {
					t.Errorf("the mount saw path %q; want the normalised %q", m.Path, want)
				}
				wantHasID := c.wantBy == byBilling
				if m.HasID != wantHasID || m.ID.User != c.wantID.User || m.ID.Customer != c.wantID.Customer {
					t.Errorf("auth.FromContext = user %q customer %q, %v; want user %q customer %q, %v",
						m.ID.User, m.ID.Customer, m.HasID, c.wantID.User, c.wantID.Customer, wantHasID)
				}
				if bad := reservedIn(m.Header); len(bad) > 0 {
					t.Errorf("the mount saw reserved headers %v; want none", bad)
				}
			}
		})
	}
	// Requests to tollgate's own endpoints are counted under their path.
	for _, c := range []struct {
		route, decision string
	}{{"/_tollgate/billing", "internal"}, {"/_tollgate/billing", "unauthenticated"}, {"/_tollgate/stripe/webhook", "internal"}} {
		if n := testutil.ToFloat64(rig.metrics.Requests.WithLabelValues(c.route, c.decision)); n == 0 {
			t.Errorf("tollgate_requests_total{route=%q,decision=%q} = 0; want the mount's requests counted", c.route, c.decision)
		}
	}
}
