package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"time"
)

// rewrite builds the outbound request. httputil.ReverseProxy has already
// removed hop-by-hop headers (including any a client listed in Connection)
// and Forwarded / X-Forwarded-* before this runs, so what is set here
// cannot be removed by the client.
func (s *Server) rewrite(pr *httputil.ProxyRequest) {
	x := pr.In.Context().Value(exchangeKey{}).(*exchange)

	// The one normalised path, never the client's raw form: pr.Out.URL is
	// ReverseProxy's copy of r.URL, which ServeHTTP set to it (step 3) and
	// nothing changes after, so it is not set a second time here.
	pr.SetURL(s.upstream)
	pr.Out.Host = pr.In.Host // the app sees the host the client asked for

	// X-Forwarded-*: a trusted proxy's values are kept and extended; an
	// untrusted peer's were removed by ReverseProxy and are set afresh
	// below, with the identity headers.
	delete(pr.Out.Header, "X-Real-Ip") // Header.Del of a canonical name
	trusted := s.trustedPeer(pr.In.RemoteAddr)
	if trusted {
		keepForwarded(pr)
	}
	x.upgrades = s.upgrades.filter(pr.Out.Header, x.saw)

	h := pr.Out.Header
	if !s.fwdAuth {
		delete(h, "Authorization") // Header.Del of a canonical name
		if s.cookie != "" {
			removeCookie(h, s.cookie)
		}
	}
	x.setIdentity(h, pr.In, !trusted)
	x.upstreamStart = time.Now()
}

// identityHeaders are the headers setIdentity writes, in its order, and
// then the X-Forwarded-* it sets for an untrusted peer.
var identityHeaders = [...]string{HeaderRequestID, HeaderUser, HeaderCustomer, HeaderPlan, HeaderStatus, HeaderFeatures, HeaderShadowDenial,
	"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

// forwardedAt is where the X-Forwarded-* names start in identityHeaders.
const forwardedAt = 7

// setIdentity sets the request id and the verified identity on the
// outbound request, each header only when it has a value, and with
// forwarded what httputil.ProxyRequest.SetXForwarded sets for a request
// without X-Forwarded-* (ReverseProxy has removed the client's): the
// peer's address (when RemoteAddr has a port, as SetXForwarded), the host
// asked for and the scheme. It is Header.Set for each, with the values in
// the exchange's slots instead of an allocation per header (the names are
// canonical already).
func (x *exchange) setIdentity(h http.Header, in *http.Request, forwarded bool) {
	// (Field by field rather than through an array of the values and a
	// loop: this is on every request, issue 13.)
	x.fieldIf(h, 0, x.rid)
	x.fieldIf(h, 1, x.id.User)
	x.fieldIf(h, 2, x.id.Customer)
	x.fieldIf(h, 3, x.decision.Plan)
	x.fieldIf(h, 4, x.decision.Status)
	x.fieldIf(h, 5, x.decision.Features)
	x.fieldIf(h, 6, x.shadowDenial)
	if !forwarded {
		return
	}
	if ip, _, err := net.SplitHostPort(in.RemoteAddr); err != nil {
		delete(h, "X-Forwarded-For")
	} else if ip != "" {
		x.field(h, forwardedAt, ip)
	}
	x.field(h, forwardedAt+1, in.Host) // set even when empty, as SetXForwarded does
	proto := "http"
	if in.TLS != nil {
		proto = "https"
	}
	x.field(h, forwardedAt+2, proto)
}

// fieldIf is field when v is not empty.
func (x *exchange) fieldIf(h http.Header, i int, v string) {
	if v != "" {
		x.field(h, i, v)
	}
}

// field sets identityHeaders[i] to v, held in the exchange's slot for it.
func (x *exchange) field(h http.Header, i int, v string) {
	h[identityHeaders[i]] = x.slot(slotIdentity+i, v)
}

// removeCookie drops every cookie called name from the Cookie headers,
// keeping the others as sent.
func removeCookie(h http.Header, name string) {
	var kept []string
	for _, line := range h.Values("Cookie") {
		var parts []string
		for _, part := range strings.Split(line, ";") {
			k, _, _ := strings.Cut(strings.TrimSpace(part), "=")
			if strings.TrimSpace(k) != name {
				parts = append(parts, strings.TrimSpace(part))
			}
		}
		if len(parts) > 0 {
			kept = append(kept, strings.Join(parts, "; "))
		}
	}
	h.Del("Cookie")
	if len(kept) > 0 {
		h.Set("Cookie", strings.Join(kept, "; "))
	}
}

// keepForwarded keeps a trusted proxy's X-Forwarded-* and X-Real-Ip and
// extends X-Forwarded-For with the peer.
func keepForwarded(pr *httputil.ProxyRequest) {
	in, out := pr.In.Header, pr.Out.Header
	for _, k := range []string{"X-Forwarded-For", "X-Real-Ip"} {
		if v := in.Values(k); len(v) > 0 {
			out[k] = append([]string(nil), v...)
		}
	}
	pr.SetXForwarded() // appends the peer to the kept X-Forwarded-For
	for _, k := range []string{"X-Forwarded-Host", "X-Forwarded-Proto"} {
		if v := in.Get(k); v != "" {
			out.Set(k, v)
		}
	}
}

func (s *Server) trustedPeer(remote string) bool {
	if len(s.trusted) == 0 {
		return false
	}
	ip, err := netip.ParseAddr(peerIP(remote))
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range s.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func peerIP(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return remote
	}
	return host
}

// modifyResponse records the upstream's answer, bills it, and removes every
// reserved header from it, so the app cannot leak tollgate-internal headers
// and X-Tollgate-Usage never reaches the client.
func (s *Server) modifyResponse(resp *http.Response) error {
	x := resp.Request.Context().Value(exchangeKey{}).(*exchange)
	if err := checkSwitch(resp, x.upgrades); err != nil {
		return err // 502: the tunnel is never opened
	}
	x.status = resp.StatusCode
	if !x.upstreamStart.IsZero() {
		s.metrics.UpstreamDuration.Observe(time.Since(x.upstreamStart).Seconds())
	}
	s.meterAnswer(resp, x)
	StripReserved(resp.Header)
	if b := x.bill; b != nil && b.hold != nil {
		// Into the client's answer itself, not resp.Header, which
		// ReverseProxy copies into it a value at a time (an allocation and
		// a canonicalisation each); an app's own RateLimit fields follow.
		x.route.rate.set(x.info.Header(), b.hold.State(), x)
	}
	if s.cors != nil {
		// tollgate owns CORS: the app's own headers would duplicate ours,
		// and browsers refuse an answer with two Access-Control-Allow-Origin.
		for k := range resp.Header {
			if strings.HasPrefix(k, "Access-Control-") {
				delete(resp.Header, k)
			}
		}
	}
	// Trailers are filled in when the body ends (undeclared ones too):
	// strip the declarations now, so ReverseProxy does not announce them,
	// and the values at EOF, after the usage trailer was read.
	StripReserved(resp.Trailer)
	// (A 101 body is the upgraded connection itself and must stay as is.)
	if resp.Body != nil && resp.Body != http.NoBody && resp.StatusCode != http.StatusSwitchingProtocols && mayHaveTrailers(resp) {
		resp.Body = &trailerFilter{ReadCloser: resp.Body, resp: resp, s: s, x: x}
	}
	return nil
}

// mayHaveTrailers reports whether an answer's body can end with trailers:
// in HTTP/1 only a chunked one (net/http reads trailers of nothing else;
// a body of known length has none), in HTTP/2 any. The others need no
// trailerFilter, which is an allocation and an indirection per read.
func mayHaveTrailers(resp *http.Response) bool {
	return resp.ProtoMajor != 1 || resp.ContentLength < 0 || len(resp.Trailer) > 0
}

// trailerFilter bills a declared usage trailer and removes reserved
// trailers once the upstream body ends, before ReverseProxy copies them to
// the client. The transport fills resp.Trailer before it returns io.EOF.
type trailerFilter struct {
	io.ReadCloser
	resp *http.Response
	s    *Server
	x    *exchange
}

func (b *trailerFilter) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.s.trailerEnd(b.resp, b.x)
		StripReserved(b.resp.Trailer)
	}
	return n, err
}

// informationalFilter removes reserved headers from 1xx answers (103 Early
// Hints), which ReverseProxy copies to the client before ModifyResponse
// runs. Unwrap keeps http.ResponseController's Flush and Hijack working.
type informationalFilter struct{ http.ResponseWriter }

func (w informationalFilter) WriteHeader(code int) {
	if code < 200 {
		StripReserved(w.Header())
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w informationalFilter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// upstreamError answers when the upstream could not be reached or failed
// before its answer's header. Nothing is billed for such a request, unless
// the client left (see settle).
func (s *Server) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	x := r.Context().Value(exchangeKey{}).(*exchange)
	ctx := r.Context()
	if errors.Is(err, context.Canceled) && errors.Is(context.Cause(ctx), ErrShuttingDown) {
		// tollgate cut the request off at shutdown: not the client's doing,
		// so not billed.
		x.outcome, x.status = "shutdown", http.StatusServiceUnavailable
		s.log.WarnContext(ctx, "request cut off by shutdown", "cause", err.Error())
		return
	}
	if herr := x.refused.Load(); herr != nil {
		// The body streamed to the app held _method: the upload was cut
		// short before the field was sent.
		s.deny(ctx, w, x, herr, err)
		return
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away; there is nobody to answer.
		x.outcome, x.status, x.clientGone = "client_closed", 499, true
		s.log.DebugContext(ctx, "client closed request", "cause", err.Error())
		return
	}
	e := errUpstream
	var ne net.Error
	switch {
	case errors.Is(err, errSwitchRefused):
		e = errBadSwitch
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		e = errUpstreamTimeout
	}
	x.outcome, x.status = decisionUpstreamError, e.Status
	s.log.WarnContext(ctx, "upstream failed", "cause", err.Error())
	WriteError(w, e)
}
