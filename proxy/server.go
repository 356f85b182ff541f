package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/cors"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/logging"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// Identity headers tollgate sets on forwarded requests. Clients can never
// set them: every X-Tollgate-* header is stripped at ingress.
const (
	HeaderUser     = "X-Tollgate-User"
	HeaderCustomer = "X-Tollgate-Customer"
	HeaderPlan     = "X-Tollgate-Plan"
	HeaderStatus   = "X-Tollgate-Status"
	HeaderFeatures = "X-Tollgate-Features"
	// HeaderUsage is the upstream's answer header metering N units.
	HeaderUsage     = "X-Tollgate-Usage"
	HeaderRequestID = "X-Request-Id"
)

// ErrShuttingDown is the cause with which the server's owner cancels the
// contexts of requests it cuts off when a graceful shutdown ran out of time
// (http.Server.BaseContext): such a request is not billed as a client abort.
var ErrShuttingDown = errors.New("proxy: shutting down")

// Authenticator verifies the caller of a request; *auth.Verifier is one.
// It returns auth.ErrNoCredentials when the request carries no token.
type Authenticator interface {
	Authenticate(r *http.Request) (auth.Identity, error)
}

// Decision is what the gate allowed, forwarded as identity headers, and
// the limit on the route's meter that the reserve step holds the request to.
type Decision struct {
	Plan     string
	Status   string
	Features string // comma separated
	Limit    Limit
}

// Gate decides whether an authenticated caller may use a route. A non-nil
// *HTTPError is the denial to send.
type Gate interface {
	Decide(ctx context.Context, route *config.Route, id auth.Identity) (Decision, *HTTPError)
}

// Counter records metered usage of id's customer (the sidecar puts
// *meter.Meter behind it). Count is called on the request path when the
// answer's header (or its usage trailer) arrives, so it must not block or
// do network I/O.
type Counter interface {
	Count(id auth.Identity, meter string, units int64)
}

// Mount is an endpoint tollgate serves itself on the proxy listener (the
// Stripe webhook, the billing API). It sees the normalised path.
type Mount struct {
	Path    string
	Prefix  bool // Path and everything below it
	Handler http.Handler
	// Auth requires a valid token, as an auth: required route does; the
	// handler finds the caller with auth.FromContext.
	Auth bool
}

// Options configure a Server.
type Options struct {
	Config        *config.Config
	Authenticator Authenticator // nil: every auth: required route answers 401
	Gate          Gate          // nil: every route with require answers 503
	Counter       Counter       // nil: nothing is metered
	Quota         Quota         // nil: limits are not enforced
	Mounts        []Mount
	Metrics       *metrics.Metrics
	Logger        *slog.Logger
	Transport     http.RoundTripper // nil: one built from config.Proxy
}

// Server is the proxy listener's handler.
type Server struct {
	routes   []route
	upstream *url.URL
	trusted  []netip.Prefix
	fwdAuth  bool
	cookie   string // the token cookie, removed with Authorization
	auth     Authenticator
	gate     Gate
	counter  Counter
	quota    Quota
	maxUnits int64 // metering.max_units_per_request
	counted  func(status int) bool
	mounts   []Mount
	cors     *cors.Cors // nil: tollgate leaves CORS to the app
	upgrades upgrades   // proxy.upgrades
	metrics  *metrics.Metrics
	log      *slog.Logger
	logh     slog.Handler // log's, for the access line (see accessLog)
	rp       *httputil.ReverseProxy

	// allowOverride keeps the method-override headers
	// (proxy.allow_method_override).
	allowOverride bool
}

type route struct {
	cfg     *config.Route
	pattern Pattern
	methods []string
	label   string
	shadow  bool        // entitlement denials are forwarded, not answered (see shadow)
	series  routeSeries // its request metrics, resolved at start
	rate    *rateFields // its RateLimit fields, for a metered route
}

func init() {
	config.PatternChecker = func(p string) error {
		_, err := CompilePattern(p)
		return err
	}
}

// New builds the handler from a validated configuration.
func New(o Options) (*Server, error) {
	c := o.Config
	up, err := url.Parse(c.Upstream)
	if err != nil {
		return nil, fmt.Errorf("proxy: upstream: %w", err)
	}
	s := &Server{
		upstream: up,
		fwdAuth:  c.Auth.JWT.ForwardsAuthorization(),
		cookie:   c.Auth.JWT.Cookie,
		auth:     o.Authenticator,
		gate:     o.Gate,
		counter:  o.Counter,
		quota:    o.Quota,
		maxUnits: c.Metering.MaxUnitsPerRequest,
		counted:  c.Metering.Counts,
		mounts:   o.Mounts,
		upgrades: newUpgrades(c.Proxy.Upgrades),
		metrics:  o.Metrics,
		log:      o.Logger,

		allowOverride: c.Proxy.AllowMethodOverride,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.logh = s.log.Handler()
	if s.metrics == nil {
		s.metrics = metrics.New()
	}
	for m := range c.Metering.Meters {
		s.metrics.UsageInvalid.WithLabelValues(m) // present at 0 from start
	}
	for i, rc := range c.Routes {
		p, err := CompilePattern(rc.Path)
		if err != nil {
			return nil, fmt.Errorf("proxy: routes[%d].path: %w", i, err)
		}
		rt := route{cfg: rc, pattern: p, methods: rc.Methods, label: rc.Label(), shadow: rc.Shadowed(c.Gating.Mode)}
		if rc.Meter != "" {
			rt.rate = newRateFields(rc.Meter)
		}
		s.routes = append(s.routes, rt)
	}
	s.setUpShadow()
	if c.CORS.Enabled() {
		s.cors = cors.New(cors.Options{
			AllowedOrigins:   c.CORS.AllowedOrigins,
			AllowedMethods:   c.CORS.AllowedMethods,
			AllowedHeaders:   c.CORS.AllowedHeaders,
			ExposedHeaders:   c.CORS.ExposedHeaders,
			AllowCredentials: c.CORS.AllowCredentials,
			MaxAge:           int(c.CORS.MaxAge.Seconds()),
		})
	}
	s.initSeries(c)
	for _, cidr := range c.TrustedProxies {
		pfx, err := netip.ParsePrefix(cidr)
		if err != nil {
			return nil, fmt.Errorf("proxy: trusted_proxies: %w", err)
		}
		s.trusted = append(s.trusted, pfx.Masked())
	}
	tr := o.Transport
	if tr == nil {
		tr = NewTransport(c.Proxy)
	}
	s.rp = &httputil.ReverseProxy{
		Rewrite:        s.rewrite,
		Transport:      tr,
		ModifyResponse: s.modifyResponse,
		ErrorHandler:   s.upstreamError,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BufferPool:     copyBuffers,
	}
	return s, nil
}

// NewTransport is the upstream transport with every timeout bounded.
func NewTransport(c config.ProxyTimeouts) *http.Transport {
	return &http.Transport{
		Proxy:                 nil, // never send app traffic through an environment proxy
		DialContext:           (&net.Dialer{Timeout: c.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		ResponseHeaderTimeout: c.ResponseHeaderTimeout,
		IdleConnTimeout:       c.IdleConnTimeout,
		MaxIdleConnsPerHost:   c.MaxIdleConnsPerHost,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     true,
		// Encodings are for the client and the app to agree on. Otherwise
		// the transport asks for gzip on the client's behalf and
		// decompresses the answer itself: CPU in the proxy, and a body
		// that is not what the app sent.
		DisableCompression: true,
	}
}

// exchange is what one request carries from ServeHTTP to the
// ReverseProxy callbacks, through the request context.
type exchange struct {
	// ctx is the request's context from step 1 on; it finds this exchange
	// and the request id (see exchangeContext).
	ctx      exchangeContext
	path     string // the one normalised path: matched, gated, forwarded
	rid      string
	route    *route
	mount    *Mount
	id       auth.Identity
	decision Decision
	status   int    // upstream status, 0 if none
	bill     *bill  // nil: the route is not metered for this caller
	owed     bill   // what bill points to, kept here to save an allocation
	outcome  string // metrics decision label
	// saw is which fields upgrades.filter handles the client sent (step 2).
	saw upgradeFields
	// upstreamStart is when the request left for the upstream (rewrite).
	upstreamStart time.Time
	// info is the ResponseWriter forwarding writes to (see forward).
	info informationalFilter
	// clientGone is set when the client left before the upstream answered.
	clientGone bool

	// upgrades are the Upgrade tokens forwarded: the only protocols a 101
	// may switch to.
	upgrades []string
	// refused is set when the streamed body turned out to hold _method.
	refused atomic.Pointer[HTTPError]
	// shadowDenial is the code of the denial a route in shadow mode
	// forwarded instead of answering ("" when none).
	shadowDenial string

	// vals back the header values tollgate sets, one element each (see
	// slot), so that setting them allocates nothing of its own: the
	// exchange is allocated anyway and lives as long as the request.
	vals [numSlots]string

	// req is the request from step 1 on, with ctx as its context: the
	// copy Request.WithContext would allocate, kept here instead.
	req http.Request
}

// Slots of exchange.vals: the request id (the client's request and answer
// share it), the outbound identity and X-Forwarded-* headers in
// identityHeaders' order, and the RateLimit field of the answer.
const (
	slotRequestID = 0
	slotIdentity  = 1
	slotRateLimit = slotIdentity + len(identityHeaders)
	numSlots      = slotRateLimit + 1
)

// slot stores v in the exchange's slot i and returns it as a header's
// values: capacity 1, so an Add to the header copies it instead of writing
// into the next slot.
func (x *exchange) slot(i int, v string) []string {
	x.vals[i] = v
	return x.vals[i : i+1 : i+1]
}

type exchangeKey struct{}

// ServeHTTP handles one request in numbered steps; each step that denies
// answers in the SPEC's JSON shape.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	x := &exchange{outcome: decisionAllowed}

	// 1. Request id: keep a well-formed client id, or make one.
	if vv := r.Header[HeaderRequestID]; len(vv) > 0 { // Header.Get, for a canonical name
		x.rid = vv[0]
	}
	if !ValidRequestID(x.rid) {
		x.rid = NewRequestID()
	}
	// (Header.Set, with one value slice for both: its capacity of 1 makes
	// an Add to either header copy it.)
	rid := x.slot(slotRequestID, x.rid)
	r.Header[HeaderRequestID], w.Header()[HeaderRequestID] = rid, rid
	// Every line logged for this request, in any package, carries its id.
	x.ctx = exchangeContext{Context: r.Context(), x: x}
	x.req = *r.WithContext(&x.ctx) // (inlined: its copy stays on the stack)
	r = &x.req
	ctx := r.Context()

	// 2. Header hygiene, before anything reads headers.
	x.saw = stripInbound(r.Header, !s.allowOverride)

	defer func() { s.observe(ctx, r, x, start) }()

	// 3. One normalised path for everything that follows, and a method
	// routes can be matched on.
	p, err := NormalizePath(r.RequestURI)
	if herr := s.checkListedOnly(w, r.Method, p, err); herr != nil {
		s.deny(ctx, w, x, herr, nil)
		return
	}
	if err != nil {
		s.deny(ctx, w, x, errBadPath, err)
		return
	}
	if !upperToken(r.Method) {
		// Methods are case-sensitive (RFC 9110 §9.1), but some frameworks
		// upper-case them: "get" must not miss a methods: [GET] route and
		// reach the app through a looser one.
		s.deny(ctx, w, x, errBadMethod, nil)
		return
	}
	x.path = p
	setPath(r.URL, p)

	// 4. CORS, when tollgate owns it: a preflight carries no token, so it
	// is answered here and never reaches auth, the gate or the app; any
	// other answer to an allowed origin, denials included, is marked.
	if s.cors != nil {
		s.cors.HandlerFunc(w, r)
		if isPreflight(r) {
			x.outcome, x.status = decisionPreflight, http.StatusNoContent
			return
		}
	}

	// 5. tollgate's own endpoints.
	if m := s.mount(p); m != nil {
		x.mount = m
		if m.Auth {
			if herr := s.authenticateMount(r, x); herr != nil {
				s.deny(ctx, w, x, herr, herr.Err)
				return
			}
			r = r.WithContext(auth.NewContext(r.Context(), x.id))
		}
		x.outcome = decisionInternal
		sw := &statusWriter{ResponseWriter: w}
		m.Handler.ServeHTTP(sw, r)
		x.status = sw.code()
		return
	}

	// 6. Route: first match wins; no match is a denial.
	x.route = s.match(r.Method, p)
	if x.route == nil {
		s.deny(ctx, w, x, errNoRoute, nil)
		return
	}

	// 6b. The app must see the method the route allowed: no method
	// override that could lead it elsewhere.
	if herr := s.checkOverride(r, x); herr != nil {
		s.deny(ctx, w, x, herr, herr.Err)
		return
	}

	// 7. Authentication per the route's mode.
	if herr := s.authenticate(r, x); herr != nil {
		s.deny(ctx, w, x, herr, herr.Err)
		return
	}

	// 8. Gate: entitlements, and the limit on a metered route's meter. On a
	// route in shadow mode an entitlement denial is forwarded (shadow).
	if herr := s.decide(ctx, x); herr != nil && !s.shadow(ctx, x, herr) {
		s.deny(ctx, w, x, herr, herr.Err)
		return
	}

	// 9. Reserve the request's units of a limited quota before anything
	// reaches the app (429 when the quota cannot pay for them; on a route
	// in shadow mode forwarded, billed and counted against the quota).
	if herr := s.reserve(ctx, x); herr != nil && !s.shadowReserve(ctx, x, herr) {
		s.deny(ctx, w, x, herr, herr.Err)
		return
	}

	// 10. Settle what the answer billed, deferred: the answer's header or
	// its usage trailer settles it while forwarding, and a client that
	// aborts a streamed answer ends forwarding with a panic
	// (http.ErrAbortHandler) and must still pay.
	defer s.settle(x)

	// 11. Forward with verified identity headers.
	s.forward(w, r, x)
}

// decide asks the gate about the request (step 8). A route that requires
// nothing still asks a configured gate, for quotas and plan headers.
func (s *Server) decide(ctx context.Context, x *exchange) *HTTPError {
	if !x.route.cfg.Require.Any() && (x.route.cfg.Meter == "" || s.gate == nil) {
		return nil
	}
	if s.gate == nil {
		return errUnavailable.WithCause(errors.New("no entitlements gate configured"))
	}
	d, herr := s.gate.Decide(ctx, x.route.cfg, x.id)
	// Kept with a denial too: a request shadow mode forwards still tells
	// the app the caller's plan and features.
	x.decision = d
	return herr
}

// forward hands the request to ReverseProxy (step 11); rewrite,
// modifyResponse and upstreamError find the exchange in its context.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, x *exchange) {
	x.info = informationalFilter{w}
	s.rp.ServeHTTP(&x.info, r)
}

func (s *Server) authenticate(r *http.Request, x *exchange) *HTTPError {
	return s.authenticateAs(r, x, x.route.cfg.AuthMode())
}

// authenticateMount authenticates a request to a mount with Auth set.
func (s *Server) authenticateMount(r *http.Request, x *exchange) *HTTPError {
	return s.authenticateAs(r, x, config.AuthRequired)
}

func (s *Server) authenticateAs(r *http.Request, x *exchange, mode string) *HTTPError {
	if mode == config.AuthNone {
		return nil
	}
	if s.auth == nil {
		if mode == config.AuthOptional {
			return nil
		}
		return errUnauthenticated.WithCause(errors.New("no authenticator configured"))
	}
	id, err := s.auth.Authenticate(r)
	switch {
	case err == nil:
		x.id = id
		return nil
	case errors.Is(err, auth.ErrNoCredentials) && mode == config.AuthOptional:
		return nil
	case errors.Is(err, auth.ErrLinkUnavailable):
		// The token is valid; the user→customer link could not be read.
		return errUnavailable.WithCause(err)
	default:
		// A present-but-invalid token is refused on optional routes too.
		return errUnauthenticated.WithCause(err)
	}
}

func (s *Server) mount(p string) *Mount {
	for i := range s.mounts {
		m := &s.mounts[i]
		if p == m.Path || (m.Prefix && strings.HasPrefix(p, strings.TrimSuffix(m.Path, "/")+"/")) {
			return m
		}
	}
	return nil
}

func (s *Server) match(method, p string) *route {
	for i := range s.routes {
		rt := &s.routes[i]
		if len(rt.methods) > 0 && !containsMethod(rt.methods, method) ||
			len(rt.methods) == 0 && listedOnly(method) {
			continue
		}
		if rt.pattern.Match(p) {
			return rt
		}
	}
	return nil
}

// containsMethod reports whether a route's methods cover m. HEAD is
// covered by GET, as in net/http's ServeMux: apps answer HEAD with their
// GET handler.
func containsMethod(methods []string, m string) bool {
	for _, x := range methods {
		if x == m || (m == http.MethodHead && x == http.MethodGet) {
			return true
		}
	}
	return false
}

// isPreflight reports a CORS preflight: OPTIONS asking for another method.
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
}

func upperToken(m string) bool {
	for i := 0; i < len(m); i++ {
		if c := m[i]; c >= 'a' && c <= 'z' {
			return false
		}
	}
	return m != ""
}

func (s *Server) deny(ctx context.Context, w http.ResponseWriter, x *exchange, e *HTTPError, cause error) {
	x.outcome = e.Code
	x.status = e.Status
	if cause != nil {
		s.log.InfoContext(ctx, "request denied", "code", e.Code, "cause", cause.Error())
	}
	WriteError(w, e)
}

func (s *Server) observe(ctx context.Context, r *http.Request, x *exchange, start time.Time) {
	end := time.Now()
	d := end.Sub(start)
	label := labelNoRoute
	switch {
	case x.route != nil:
		label = x.route.label
		x.route.series.counter(s.metrics, label, x.outcome).Inc()
		x.route.series.duration.Observe(d.Seconds())
	case x.mount != nil:
		label = x.mount.Path // tollgate's own endpoint
	}
	if x.route == nil {
		s.metrics.Requests.WithLabelValues(label, x.outcome).Inc()
		s.metrics.RequestDuration.WithLabelValues(label).Observe(d.Seconds())
	}
	if cr := s.metrics.CustomerRequests; cr != nil && x.id.Customer != "" {
		cr.WithLabelValues(x.id.Customer, x.outcome).Inc()
	}
	s.accessLog(ctx, r, x, label, end, d)
}

// accessLog writes the request's line at info. It is on by default, so it
// is kept cheap (issue 13): nothing is built when info is filtered out,
// and logging.LogRequest writes it with the encoder of logging.New's
// loggers, or as a typed slog record, without slog.Logger's
// runtime.Callers.
func (s *Server) accessLog(ctx context.Context, r *http.Request, x *exchange, label string, end time.Time, d time.Duration) {
	if !s.logh.Enabled(ctx, slog.LevelInfo) {
		return
	}
	_ = logging.LogRequest(ctx, s.logh, end, logging.RequestLine{Method: r.Method, Path: x.path, Route: label,
		Decision: x.outcome, Status: x.status, Duration: d, RequestID: x.rid})
}

// RequestID returns the id of the request being served, from its context
// (mounted handlers, the gate, anything called with the request's ctx).
func RequestID(ctx context.Context) string { return logging.RequestID(ctx) }
