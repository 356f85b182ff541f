package proxy

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync/atomic"
)

// OverrideScanBytes is how much of a form body tollgate reads, on a path
// some route limits by method, before it forwards the request: a _method
// field within it is refused before the app sees anything. The rest of a
// longer body is checked as it streams to the app: a _method field there
// aborts the upload before the field's bytes are sent, so the app gets a
// truncated body it cannot parse, and the client gets 400.
const OverrideScanBytes = 64 << 10

// overrideHeaders are the method-override headers Rails, Laravel, Symfony,
// ASP.NET and Express's method-override honour, folded as IsReserved
// folds names (so X_HTTP_Method_Override, which CGI-style servers read as
// the same header, is one of them).
var overrideHeaders = [...]string{"x-http-method-override", "x-http-method", "x-method-override"}

var (
	errMethodOverride = &HTTPError{Status: http.StatusBadRequest, Code: "method_override",
		Msg: "A method override (_method) is not allowed on this path: send the request with the method itself."}
	errOverrideHeader = &HTTPError{Status: http.StatusBadRequest, Code: "method_override",
		Msg: "The method override names a method this route does not allow."}
	errUncheckableForm = &HTTPError{Status: http.StatusBadRequest, Code: "method_override",
		Msg: "The form body cannot be checked for a method override: send one Content-Type, no Content-Encoding, and a multipart boundary."}
	errBadBody = &HTTPError{Status: http.StatusBadRequest, Code: "bad_request",
		Msg: "The request body could not be read."}
)

// IsMethodOverride reports whether a header name is one of the
// method-override headers, in any spelling IsReserved would fold.
func IsMethodOverride(name string) bool {
	for _, h := range overrideHeaders {
		if len(name) != len(h) {
			continue
		}
		i := 0
		for i < len(h) && foldHeaderByte(name[i]) == h[i] {
			i++
		}
		if i == len(h) {
			return true
		}
	}
	return false
}

// StripMethodOverrides removes every method-override header from h.
func StripMethodOverrides(h http.Header) {
	for name := range h {
		if IsMethodOverride(name) {
			delete(h, name)
		}
	}
}

// stripInbound is StripReserved and, with overrides set,
// StripMethodOverrides, in one pass over the request's header. It also
// reports which of the fields upgrades.filter handles the request has, so
// that a request without them (nearly all) is not looked up for them
// again (issue 13).
func stripInbound(h http.Header, overrides bool) (saw upgradeFields) {
	for name := range h {
		if IsReserved(name) || overrides && IsMethodOverride(name) {
			delete(h, name)
			continue
		}
		switch name { // net/http's canonical keys, which filter reads
		case "Upgrade":
			saw |= sawUpgrade
		case "Http2-Settings":
			saw |= sawHTTP2Settings
		}
	}
	return saw
}

// checkOverride makes sure the app sees the method the route allowed. With
// proxy.allow_method_override the override headers stay, but the method
// they name must lead to the same route. A _method field (query or form)
// is refused on a path that a route up to the matched one limits by
// method: a route without methods matching first, or a looser route after
// a stricter one, would otherwise let POST ?_method=DELETE past it.
func (s *Server) checkOverride(r *http.Request, x *exchange) *HTTPError {
	if s.allowOverride {
		for name, values := range r.Header {
			if !IsMethodOverride(name) {
				continue
			}
			for _, v := range values {
				m := strings.ToUpper(strings.TrimSpace(v))
				if !isMethodToken(m) || s.match(m, x.path) != x.route {
					return errOverrideHeader
				}
			}
		}
	}
	if !s.methodScoped(x.path, x.route) {
		return nil
	}
	if queryHasOverride(r.URL.RawQuery) {
		return errMethodOverride
	}
	return s.scanForm(r, x)
}

// methodScoped reports whether the method decides the route for p: some
// route that could have matched before (or as) the one that did lists
// methods.
func (s *Server) methodScoped(p string, matched *route) bool {
	for i := range s.routes {
		rt := &s.routes[i]
		if len(rt.methods) > 0 && rt.pattern.Match(p) {
			return true
		}
		if rt == matched {
			return false
		}
	}
	return false
}

func isMethodToken(m string) bool {
	for i := 0; i < len(m); i++ {
		c := m[i]
		if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return m != ""
}

// scanForm reads a form body's first OverrideScanBytes and refuses a
// _method field in them; the app then receives the body unchanged (the
// prefix, then the rest, still scanned as it streams).
func (s *Server) scanForm(r *http.Request, x *exchange) *HTTPError {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil
	}
	sc, err := formScanner(r.Header)
	if err != nil {
		return errUncheckableForm.WithCause(err)
	}
	if sc == nil {
		return nil
	}
	size := int64(OverrideScanBytes)
	if r.ContentLength > 0 && r.ContentLength < size {
		size = r.ContentLength
	}
	prefix, ended, err := readPrefix(r.Body, size)
	if err != nil {
		return errBadBody.WithCause(err)
	}
	if err := sc.Write(prefix); err != nil {
		return overrideAnswer(err)
	}
	ended = ended || (r.ContentLength > 0 && int64(len(prefix)) == r.ContentLength)
	if ended {
		if err := sc.Close(); err != nil {
			return overrideAnswer(err)
		}
	}
	left := int64(-1)
	if r.ContentLength > 0 {
		left = r.ContentLength - int64(len(prefix))
	}
	r.Body = &scannedBody{prefix: bytes.NewReader(prefix), rest: r.Body, sc: sc, left: left, done: ended, refused: &x.refused}
	return nil
}

// readPrefix reads up to n bytes; ended reports a clean end of the body
// within them. Any other error (a client gone mid-body, a truncated
// chunked body) is returned: the request is not forwarded as if whole.
func readPrefix(body io.Reader, n int64) (b []byte, ended bool, err error) {
	b = make([]byte, n)
	got := 0
	for int64(got) < n {
		m, err := body.Read(b[got:])
		got += m
		if err == io.EOF {
			return b[:got], true, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
	return b[:got], false, nil
}

func overrideAnswer(err error) *HTTPError {
	if errors.Is(err, errUncheckable) {
		return errUncheckableForm.WithCause(err)
	}
	return errMethodOverride.WithCause(err)
}

// formScanner returns the scanner for the body's form encoding, nil for a
// body no app parses as a form. A body without Content-Type is read as
// urlencoded, because Rack parses a POST without one as a form. Several
// Content-Types, or a Content-Encoding, make the form ambiguous.
func formScanner(h http.Header) (fieldScanner, error) {
	cts := h.Values("Content-Type")
	if len(cts) > 1 {
		return nil, errors.New("several Content-Type headers")
	}
	ct := ""
	if len(cts) == 1 {
		ct = cts[0]
	}
	media, _, _ := strings.Cut(ct, ";")
	media = strings.ToLower(strings.TrimSpace(media))
	var sc fieldScanner
	switch {
	case media == "" || media == "application/x-www-form-urlencoded":
		sc = &urlencodedScanner{}
	case strings.HasPrefix(media, "multipart/"):
		_, params, err := mime.ParseMediaType(ct)
		b := params["boundary"]
		if err != nil || b == "" || len(b) > 200 {
			return nil, errors.New("multipart body without a usable boundary")
		}
		sc = newMultipartScanner(b)
	default:
		return nil, nil
	}
	if ce := strings.TrimSpace(h.Get("Content-Encoding")); ce != "" && !strings.EqualFold(ce, "identity") {
		return nil, errors.New("form body with Content-Encoding " + ce)
	}
	return sc, nil
}

// scannedBody is the body forwarded after scanForm: the prefix it read,
// then the rest, fed to the scanner on the way. If the rest holds _method,
// Read fails before handing over the bytes that complete the field, so the
// upload to the app is cut short and the client is answered 400.
type scannedBody struct {
	prefix  *bytes.Reader
	rest    io.ReadCloser
	sc      fieldScanner
	left    int64 // bytes of rest still due under Content-Length; -1 for chunked
	done    bool  // the scanner has seen the whole body
	refused *atomic.Pointer[HTTPError]
	err     error
}

func (b *scannedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.prefix.Len() > 0 {
		return b.prefix.Read(p)
	}
	if b.done {
		return b.rest.Read(p)
	}
	n, err := b.rest.Read(p)
	if n > 0 {
		if serr := b.sc.Write(p[:n]); serr != nil {
			return b.fail(serr)
		}
		if b.left > 0 {
			b.left -= int64(n)
		}
	}
	// Decide before the last bytes go out: with Content-Length the app
	// knows the body is complete as soon as they arrive.
	if err == io.EOF || b.left == 0 {
		b.done = true
		if serr := b.sc.Close(); serr != nil {
			return b.fail(serr)
		}
	}
	return n, err
}

func (b *scannedBody) fail(err error) (int, error) {
	b.err = err
	b.refused.Store(overrideAnswer(err))
	return 0, err
}

func (b *scannedBody) Close() error { return b.rest.Close() }
