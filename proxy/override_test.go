package proxy

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/tollgate-dev/tollgate/config"
)

// bodyRecorder is an app handler that keeps every body it received (and
// whether reading it failed), for asserting byte for byte.
type bodyRecorder struct {
	mu     sync.Mutex
	bodies []string
	errs   []error
}

func (b *bodyRecorder) handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	b.mu.Lock()
	b.bodies = append(b.bodies, string(body))
	b.errs = append(b.errs, err)
	b.mu.Unlock()
	io.WriteString(w, "ok")
}

func (b *bodyRecorder) all() ([]string, []error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.bodies...), append([]error(nil), b.errs...)
}

// overrideRoutes: DELETE on /admin/** needs a token; everything else is a
// public GET/POST, the shape that method overrides turn into an
// unauthenticated DELETE.
var overrideRoutes = []*config.Route{
	{Path: "/admin/**", Methods: []string{"DELETE"}, Auth: config.AuthRequired},
	{Path: "/open/**", Auth: config.AuthNone}, // no methods, nothing before it limits /open
	{Path: "/**", Methods: []string{"GET", "POST"}, Auth: config.AuthNone},
}

func overrideProxy(t *testing.T, mutate func(*config.Config)) (*proxyRig, *bodyRecorder) {
	t.Helper()
	rec := &bodyRecorder{}
	rig := newProxy(t, func(c *config.Config, _ *Options) {
		c.Routes = overrideRoutes
		if mutate != nil {
			mutate(c)
		}
	}, rec.handle)
	return rig, rec
}

// Method override (Rails, Laravel, Symfony, Express method-override): a
// client-sent X-HTTP-Method-Override turns a public POST into a DELETE
// the gate never judged. The headers are removed, in every spelling.
func TestMethodOverrideHeadersRemoved(t *testing.T) {
	rig, _ := overrideProxy(t, nil)
	headers := []string{
		"X-HTTP-Method-Override: DELETE", "x-http-method: DELETE", "X-Method-Override: DELETE",
		"X_HTTP_Method_Override: DELETE", "X.Method.Override: DELETE", "X-HTTP-METHOD: DELETE",
	}
	for _, path := range []string{"/admin/x", "/open/x"} {
		resp := rawRequest(t, rig.front.Listener.Addr().String(), "POST", path, append(headers, "Content-Length: 0")...)
		if resp.StatusCode != 200 {
			t.Fatalf("POST %s = %d; want 200 (the public route)", path, resp.StatusCode)
		}
		got := rig.backend.requests()
		for k, v := range got[len(got)-1].Header {
			if IsMethodOverride(k) {
				t.Errorf("POST %s: app saw %s: %v; want every override header removed", path, k, v)
			}
		}
	}
}

// Method override onto a stricter route: with proxy.allow_method_override
// the headers stay, but only when the method they name leads to the route
// the request matched.
func TestAllowedMethodOverrideMustKeepTheRoute(t *testing.T) {
	rig, _ := overrideProxy(t, func(c *config.Config) { c.Proxy.AllowMethodOverride = true })
	addr := rig.front.Listener.Addr().String()
	for _, c := range []struct {
		name, path, header string
		want               int
	}{
		// Method override to DELETE on a public POST route: the DELETE route needs a token.
		{"to a stricter route", "/admin/x", "X-HTTP-Method-Override: DELETE", 400},
		{"lower case", "/admin/x", "X-HTTP-Method-Override: delete", 400},
		{"other spelling", "/admin/x", "X_Method_Override: DELETE", 400},
		{"not a method", "/x", "X-HTTP-Method: DELETE, GET", 400},
		{"to TRACE", "/open/x", "X-HTTP-Method-Override: TRACE", 400},
		{"same route", "/x", "X-HTTP-Method-Override: GET", 200},
		{"route without methods", "/open/x", "X-HTTP-Method-Override: PUT", 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := len(rig.backend.requests())
			resp := rawRequest(t, addr, "POST", c.path, c.header, "Content-Length: 0")
			if resp.StatusCode != c.want {
				t.Fatalf("POST %s with %s = %d; want %d", c.path, c.header, resp.StatusCode, c.want)
			}
			got := rig.backend.requests()
			if c.want != 200 {
				if errorCode(t, resp) != "method_override" || len(got) != before {
					t.Errorf("want 400 method_override and nothing forwarded; the app saw %d requests", len(got)-before)
				}
				return
			}
			name, _, _ := strings.Cut(c.header, ":")
			if got[len(got)-1].Header.Get(name) == "" {
				t.Errorf("app did not get %s; want it kept (allow_method_override)", name)
			}
		})
	}
}

// Method override through a _method field: POST /admin/x?_method=DELETE
// (or a form field) is a DELETE to Rails, Laravel and Symfony. On a path
// some route limits by method it is refused, in every spelling a parser
// reads as _method, before the app sees anything.
func TestMethodOverrideFieldRefused(t *testing.T) {
	rig, rec := overrideProxy(t, nil)
	const b = "XyZ123"
	mp := func(disposition string) string {
		return "--" + b + "\r\nContent-Disposition: " + disposition + "\r\n\r\nDELETE\r\n--" + b + "--\r\n"
	}
	for _, c := range []struct {
		name, target, ctype, body string
	}{
		{"query", "/admin/x?_method=DELETE", "", ""},
		{"query upper case", "/admin/x?_METHOD=delete", "", ""},
		{"query array", "/admin/x?_method[]=DELETE", "", ""},
		{"query nested", "/admin/x?_method[x]=DELETE", "", ""},
		{"query percent-encoded", "/admin/x?%5Fmethod=DELETE", "", ""},
		{"query percent-encoded lower", "/admin/x?%5f%6d%65%74%68%6f%64=DELETE", "", ""},
		{"query PHP dot", "/admin/x?.method=DELETE", "", ""},
		{"query PHP leading spaces", "/admin/x?+%20_method=DELETE", "", ""},
		{"query semicolon", "/admin/x?a=1;_method=DELETE", "", ""},
		{"query no value", "/admin/x?a=1&_method", "", ""},
		{"query NUL", "/admin/x?_method%00x=DELETE", "", ""},
		{"query on the catch-all", "/x?_method=DELETE", "", ""},
		{"urlencoded", "/admin/x", "application/x-www-form-urlencoded", "a=1&_method=DELETE"},
		{"urlencoded with charset", "/admin/x", "Application/X-WWW-Form-Urlencoded; charset=utf-8", "_Method=DELETE"},
		{"no content type (Rack reads a form)", "/admin/x", "", "_method=DELETE"},
		{"urlencoded encoded", "/admin/x", "application/x-www-form-urlencoded", "%5Fmethod=DELETE"},
		{"multipart", "/admin/x", "multipart/form-data; boundary=" + b, mp(`form-data; name="_method"`)},
		{"multipart unquoted", "/admin/x", "multipart/form-data; boundary=" + b, mp(`form-data; name=_method`)},
		{"multipart case and spaces", "/admin/x", "multipart/form-data; boundary=" + b, mp(`form-data; NAME = "_METHOD"`)},
		{"multipart RFC 5987", "/admin/x", "multipart/form-data; boundary=" + b, mp(`form-data; name*=utf-8''%5Fmethod`)},
		{"multipart RFC 2231 continuation", "/admin/x", "multipart/form-data; boundary=" + b, mp(`form-data; name*0="_me"; name*1="thod"`)},
		{"multipart array", "/admin/x", "multipart/form-data; boundary=" + b, mp(`form-data; name="_method[]"`)},
		{"multipart folded header", "/admin/x", "multipart/form-data; boundary=" + b,
			"--" + b + "\r\nContent-Disposition: form-data;\r\n name=\"_method\"\r\n\r\nDELETE\r\n--" + b + "--\r\n"},
		{"multipart LF only", "/admin/x", "multipart/form-data; boundary=" + b,
			"--" + b + "\nContent-Disposition: form-data; name=\"_method\"\n\nDELETE\n--" + b + "--\n"},
		{"multipart second part", "/admin/x", "multipart/form-data; boundary=\"" + b + "\"",
			"preamble\r\n--" + b + "\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n" + mp(`form-data; name="_method"`)},
		{"multipart mixed", "/admin/x", "multipart/mixed; boundary=" + b, mp(`form-data; name="_method"`)},
		{"several content types", "/admin/x", "text/plain\r\nContent-Type: application/x-www-form-urlencoded", "_method=DELETE"},
		{"compressed form", "/admin/x", "application/x-www-form-urlencoded\r\nContent-Encoding: gzip", "whatever"},
		{"multipart without boundary", "/admin/x", "multipart/form-data", "--x\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before, _ := rec.all()
			var h []string
			if c.ctype != "" {
				h = append(h, "Content-Type: "+c.ctype)
			}
			h = append(h, fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(c.body), c.body))
			resp := rawRequest(t, rig.front.Listener.Addr().String(), "POST", c.target, h...)
			if resp.StatusCode != 400 || errorCode(t, resp) != "method_override" {
				t.Errorf("POST %s = %d; want 400 method_override", c.target, resp.StatusCode)
			}
			if got, _ := rec.all(); len(got) != len(before) {
				t.Errorf("the app got the request; want nothing forwarded")
			}
		})
	}
}

// What is not an override passes untouched: other fields, _method in a
// value or in a file's content, JSON, and paths no route limits by method.
func TestNonOverrideBodiesForwardedIntact(t *testing.T) {
	rig, rec := overrideProxy(t, nil)
	const b = "XyZ123"
	for _, c := range []struct {
		name, target, ctype, body string
	}{
		{"field value", "/admin/x", "application/x-www-form-urlencoded", "a=_method&b=%5Fmethod"},
		{"longer name", "/admin/x", "application/x-www-form-urlencoded", "_methods=DELETE&x_method=1&_metho=2"},
		{"double-encoded", "/admin/x", "application/x-www-form-urlencoded", "%255Fmethod=DELETE"},
		{"json", "/admin/x", "application/json", `{"_method":"DELETE"}`},
		{"file content", "/admin/x", "multipart/form-data; boundary=" + b,
			"--" + b + "\r\nContent-Disposition: form-data; name=\"f\"; filename=\"_method\"\r\n\r\nname=\"_method\"\r\n--" + b + "--\r\n"},
		{"not method-scoped", "/open/x?_method=DELETE", "application/x-www-form-urlencoded", "_method=DELETE"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := []string{"Content-Type: " + c.ctype, fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(c.body), c.body)}
			resp := rawRequest(t, rig.front.Listener.Addr().String(), "POST", c.target, h...)
			if resp.StatusCode != 200 {
				t.Fatalf("POST %s = %d; want 200", c.target, resp.StatusCode)
			}
			got, _ := rec.all()
			if got[len(got)-1] != c.body {
				t.Errorf("app got body %q; want %q", got[len(got)-1], c.body)
			}
		})
	}
}

// Method override after padding: a _method field placed past the prefix
// tollgate reads up front is still found (the upload is cut before the
// field, the app never receives it, the client gets 400), and large and
// chunked bodies without one reach the app byte for byte.
func TestMethodOverrideBeyondThePrefix(t *testing.T) {
	rig, rec := overrideProxy(t, nil)
	pad := randomField(3 * OverrideScanBytes)
	const b = "XyZ123"
	bigPart := "--" + b + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n\r\n" + pad + "\r\n--" + b
	for _, c := range []struct {
		name, ctype, body string
		chunked, refuse   bool
	}{
		{"large form", "application/x-www-form-urlencoded", "pad=" + pad + "&a=1", false, false},
		{"large form chunked", "application/x-www-form-urlencoded", "pad=" + pad + "&a=1", true, false},
		{"large upload", "multipart/form-data; boundary=" + b, bigPart + "--\r\n", false, false},
		{"large upload chunked", "multipart/form-data; boundary=" + b, bigPart + "--\r\n", true, false},
		{"exactly the prefix", "application/x-www-form-urlencoded", "p=" + pad[:OverrideScanBytes-2], false, false},
		// Padding attack: the override sits past what tollgate reads before forwarding.
		{"field after padding", "application/x-www-form-urlencoded", "pad=" + pad + "&_method=DELETE", false, true},
		{"field after padding chunked", "application/x-www-form-urlencoded", "pad=" + pad + "&_method=DELETE", true, true},
		{"last field, no value", "application/x-www-form-urlencoded", "pad=" + pad + "&_method", false, true},
		{"part after a large file", "multipart/form-data; boundary=" + b,
			bigPart + "\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--" + b + "--\r\n", false, true},
		{"part after a large file chunked", "multipart/form-data; boundary=" + b,
			bigPart + "\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--" + b + "--\r\n", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			before, _ := rec.all()
			var body io.Reader = strings.NewReader(c.body)
			if c.chunked {
				body = io.MultiReader(body) // hides the length: sent chunked
			}
			req, err := http.NewRequest("POST", rig.front.URL+"/admin/x", body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", c.ctype)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("POST: %v", err)
			}
			defer resp.Body.Close()
			got, errs := rec.all()
			if !c.refuse {
				if resp.StatusCode != 200 || len(got) != len(before)+1 {
					t.Fatalf("status %d, app got %d requests; want 200 and the request", resp.StatusCode, len(got)-len(before))
				}
				if last := got[len(got)-1]; last != c.body || errs[len(errs)-1] != nil {
					t.Errorf("app got %d bytes (err %v); want the %d sent, byte for byte", len(last), errs[len(errs)-1], len(c.body))
				}
				return
			}
			if resp.StatusCode != 400 || errorCode(t, resp) != "method_override" {
				t.Errorf("status = %d; want 400 method_override", resp.StatusCode)
			}
			for i := len(before); i < len(got); i++ {
				if strings.Contains(strings.ToLower(got[i]), "_method\r\n") || strings.Contains(got[i], "_method=") || errs[i] == nil {
					t.Errorf("app read %d bytes (err %v) holding the override; want a cut-short body without it", len(got[i]), errs[i])
				}
			}
		})
	}
}

func randomField(n int) string {
	b := make([]byte, n/2)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// CONNECT tunnelling and cross-site tracing (TRACE, XST): both reach the
// app only on a route that lists them; CONNECT asks the app to open a
// tunnel, TRACE echoes cookies and Authorization back to a script.
func TestConnectAndTraceRefused(t *testing.T) {
	rig := newProxy(t, func(c *config.Config, o *Options) {
		c.Routes = []*config.Route{
			{Path: "/debug/**", Methods: []string{"TRACE"}, Auth: config.AuthNone},
			{Path: "/api/**", Methods: []string{"GET", "POST"}, Auth: config.AuthNone},
			{Path: "/**", Auth: config.AuthNone},
		}
		o.Mounts = []Mount{{Path: "/_tollgate/hook", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}}
	}, nil)
	addr := rig.front.Listener.Addr().String()
	for _, c := range []struct {
		method, target string
		want           int
		allow          string
	}{
		{"CONNECT", "/x", 405, "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"},
		{"TRACE", "/x", 405, "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"},
		{"TRACE", "/api/x", 405, "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"},
		{"CONNECT", "app.example:443", 405, ""},
		{"CONNECT", "/_tollgate/hook", 405, "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"},
		{"TRACE", "/debug/x", 200, ""},
		{"GET", "/x", 200, ""},
	} {
		before := len(rig.backend.requests())
		resp := rawRequest(t, addr, c.method, c.target)
		if resp.StatusCode != c.want {
			t.Errorf("%s %s = %d; want %d", c.method, c.target, resp.StatusCode, c.want)
			continue
		}
		forwarded := len(rig.backend.requests()) - before
		if c.want != 405 {
			if forwarded != 1 {
				t.Errorf("%s %s: app got %d requests; want 1", c.method, c.target, forwarded)
			}
			continue
		}
		if code := errorCode(t, resp); code != "method_not_allowed" || forwarded != 0 {
			t.Errorf("%s %s: code %q, forwarded %d; want method_not_allowed, nothing forwarded", c.method, c.target, code, forwarded)
		}
		if got, ok := resp.Header["Allow"]; !ok || got[0] != c.allow {
			t.Errorf("%s %s: Allow = %q (present %v); want %q", c.method, c.target, got, ok, c.allow)
		}
	}
}

// Method override in a spelling the scanner misses: every key Go's own
// query parser reads as _method (folded) is found.
func TestURLEncodedScannerMatchesParseQuery(t *testing.T) {
	for _, q := range []string{
		"a=1", "_method=x", "a=1&_method=x", "_method", "%5Fmethod=x", "_METHOD=x", "_method%5B%5D=x",
		"x=%zz&_method=1", "_me%74hod=1", "_method=%zz", "a%=1", "a=1&&&", "&=", "_methoD",
	} {
		var s urlencodedScanner
		got := s.Write([]byte(q)) != nil || s.Close() != nil
		want := false
		if v, err := url.ParseQuery(q); err == nil {
			for k := range v {
				var f keyFolder
				for i := 0; i < len(k); i++ {
					f.add(k[i])
				}
				want = want || f.override()
			}
		} else {
			want = got // url.ParseQuery refuses invalid escapes; no oracle
		}
		if got != want {
			t.Errorf("scan(%q) = %v; want %v", q, got, want)
		}
	}
}

// Method override split across TCP segments: the verdict never depends on
// how the body is split into reads.
func FuzzFieldScannersSplitAnywhere(f *testing.F) {
	f.Add("a=1&_method=DELETE", 5, false)
	f.Add("--B\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nx\r\n--B--", 9, true)
	f.Add("--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--B--", 3, true)
	f.Add("%5Fmethod=1", 1, false)
	f.Fuzz(func(t *testing.T, body string, cut int, multipart bool) {
		if cut < 0 || cut > len(body) {
			return
		}
		scan := func(parts ...string) error {
			var sc fieldScanner = &urlencodedScanner{}
			if multipart {
				sc = newMultipartScanner("B")
			}
			for _, p := range parts {
				if err := sc.Write([]byte(p)); err != nil {
					return err
				}
			}
			return sc.Close()
		}
		whole, split := scan(body), scan(body[:cut], body[cut:])
		if !errors.Is(whole, split) && !(whole == nil && split == nil) {
			t.Errorf("scan(%q) = %v; split at %d = %v", body, whole, cut, split)
		}
	})
}

// scannedBody hands over exactly the bytes it read, in order.
func TestScannedBodyIsTransparent(t *testing.T) {
	data := bytes.Repeat([]byte("a=1&b=2&"), 20000)
	r := &http.Request{Body: io.NopCloser(bytes.NewReader(data)), ContentLength: int64(len(data)),
		Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}}
	s := &Server{}
	if herr := s.scanForm(r, &exchange{}); herr != nil {
		t.Fatalf("scanForm: %v", herr)
	}
	got, err := io.ReadAll(r.Body)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("read %d bytes, %v; want the %d sent", len(got), err, len(data))
	}
}
