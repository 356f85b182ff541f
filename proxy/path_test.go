package proxy

import (
	"errors"
	"net/url"
	pathpkg "path"
	"strings"
	"testing"
)

// hostilePaths is the path normaliser's attack table. server_test.go replays
// every case through a real proxy in front of an echo backend, so a case here
// is both a unit test of NormalizePath and an end-to-end assertion on what the
// application receives. in is the raw request-target (RequestURI); want is the
// escaped path the backend must see, empty when wantErr (the proxy answers 400).
var hostilePaths = []struct {
	name, in, want string
	wantErr        bool
}{
	// Plain paths.
	{name: "root", in: "/", want: "/"},
	{name: "simple", in: "/api/users", want: "/api/users"},
	{name: "query dropped", in: "/api/x?q=1&next=/../admin", want: "/api/x"},
	{name: "hostile query ignored", in: "/api/x?a=%00&b=%2f&c=#", want: "/api/x"},
	{name: "trailing slash kept", in: "/a/b/", want: "/a/b/"},

	// Encoded separators: a backend that decodes before splitting would see
	// a different path from the one matched (CVE-2007-0450, Tomcat %5c/%2f).
	{name: "encoded slash lowercase", in: "/api/a%2fb", wantErr: true},
	{name: "encoded slash uppercase", in: "/api/a%2Fb", wantErr: true},
	{name: "encoded slash traversal", in: "/api/..%2fadmin", wantErr: true},
	{name: "raw backslash", in: `/api\..\admin`, wantErr: true},
	{name: "raw backslash traversal", in: `/api/..\admin`, wantErr: true},
	{name: "encoded backslash lowercase", in: "/api/..%5cadmin", wantErr: true},
	{name: "encoded backslash uppercase", in: "/api/..%5Cadmin", wantErr: true},

	// NUL and control bytes: C-string truncation, header and log injection.
	{name: "encoded NUL", in: "/api/x%00.json", wantErr: true},
	{name: "raw NUL", in: "/api/x\x00", wantErr: true},
	{name: "encoded tab", in: "/api/%09admin", wantErr: true},
	{name: "encoded newline", in: "/api/x%0a", wantErr: true},
	{name: "encoded CRLF injection", in: "/api/x%0d%0aSet-Cookie:%20a=b", wantErr: true},
	{name: "raw tab", in: "/api/\tx", wantErr: true},
	{name: "raw newline", in: "/api/x\n", wantErr: true},
	{name: "raw space", in: "/api/a b", wantErr: true},
	{name: "raw DEL", in: "/api/\x7f", wantErr: true},
	{name: "encoded DEL", in: "/api/%7f", wantErr: true},

	// Path parameters: Tomcat/Spring strip ";..." after the proxy matched,
	// so "/api/..;/admin" reaches /admin (Orange Tsai, Black Hat 2018).
	{name: "raw semicolon", in: "/api/x;jsessionid=1", wantErr: true},
	{name: "dotdot semicolon", in: "/api/..;/admin", wantErr: true},
	{name: "encoded dotdot semicolon", in: "/api/%2e%2e;/admin", wantErr: true},
	{name: "encoded semicolon", in: "/api/..%3badmin", wantErr: true},
	{name: "encoded semicolon uppercase", in: "/api/x%3B", wantErr: true},

	// Fragment and query delimiters hidden in the path.
	{name: "raw hash", in: "/api/x#frag", wantErr: true},
	{name: "raw hash before query", in: "/admin#/api?x", wantErr: true},
	{name: "encoded hash", in: "/api/x%23y", wantErr: true},
	{name: "encoded question mark", in: "/admin%3f/api", wantErr: true},

	// Double decoding: "%252e" is "%2e" once and "." twice (CVE-2001-0333, IIS).
	{name: "encoded percent", in: "/api/100%25", wantErr: true},
	{name: "double encoded dotdot", in: "/api/%252e%252e/admin", wantErr: true},
	{name: "double encoded slash", in: "/api/..%252fadmin", wantErr: true},

	// Invalid escapes: parsers disagree on whether to keep, drop or reject them.
	{name: "lone percent", in: "/api/%", wantErr: true},
	{name: "truncated escape", in: "/api/%4", wantErr: true},
	{name: "non hex escape", in: "/api/%zz", wantErr: true},
	{name: "half hex escape", in: "/api/%4g", wantErr: true},
	{name: "percent before slash", in: "/api/%/x", wantErr: true},

	// Dot segments resolved after decoding, clamped at the root.
	{name: "dot segment", in: "/api/./x", want: "/api/x"},
	{name: "dotdot segment", in: "/api/v1/../admin", want: "/api/admin"},
	{name: "encoded dotdot traversal", in: "/api/%2e%2e/admin", want: "/admin"},
	{name: "mixed encoded dotdot", in: "/api/.%2E/admin", want: "/admin"},
	{name: "mixed case hex dotdot", in: "/api/%2E%2e/admin", want: "/admin"},
	{name: "encoded single dot", in: "/api/%2e/x", want: "/api/x"},
	{name: "dotdot above root", in: "/../../etc/passwd", want: "/etc/passwd"},
	{name: "encoded dotdot above root", in: "/%2e%2e/%2e%2e/admin", want: "/admin"},
	{name: "trailing dot", in: "/a/b/.", want: "/a/b/"},
	{name: "trailing dotdot to root", in: "/a/..", want: "/"},
	{name: "trailing dotdot keeps slash", in: "/a/b/..", want: "/a/"},
	{name: "dotdot prefix is literal", in: "/api/..x", want: "/api/..x"},
	{name: "triple dot is literal", in: "/api/.../x", want: "/api/.../x"},
	{name: "long traversal", in: strings.Repeat("/..", 1000) + "/admin", want: "/admin"},

	// Repeated slashes: "//admin" must not dodge a "/admin" route.
	{name: "double slash prefix", in: "//admin", want: "/admin"},
	{name: "triple slash", in: "///", want: "/"},
	{name: "repeated slashes inside", in: "/api//v1///x", want: "/api/v1/x"},
	{name: "slash dot slash", in: "/./admin/./", want: "/admin/"},

	// Canonical re-encoding: one spelling per decoded path.
	{name: "unreserved decoded", in: "/%41pi", want: "/Api"},
	{name: "tilde decoded", in: "/%7euser", want: "/~user"},
	{name: "encoded dot in name", in: "/a/file%2ejson", want: "/a/file.json"},
	{name: "sub-delims raw", in: "/a/!$&'()*+,=:@", want: "/a/!$&'()*+,=:@"},
	{name: "encoded sub-delims decoded", in: "/a/%21%40%2A", want: "/a/!@*"},
	{name: "unsafe ASCII encoded", in: "/a/<script>", want: "/a/%3Cscript%3E"},
	{name: "encoded space kept", in: "/api/a%20b", want: "/api/a%20b"},
	{name: "lowercase hex uppercased", in: "/caf%c3%a9", want: "/caf%C3%A9"},
	{name: "raw unicode encoded", in: "/café", want: "/caf%C3%A9"},
	{name: "unicode emoji", in: "/%F0%9F%98%80", want: "/%F0%9F%98%80"},

	// Invalid UTF-8 and confusables: lenient decoders read overlong %c0%ae
	// as '.' (CVE-2000-0884); best-fit/NFKC turn fullwidth forms into ASCII.
	{name: "overlong UTF-8 dotdot", in: "/api/%c0%ae%c0%ae/admin", wantErr: true},
	{name: "overlong UTF-8 slash", in: "/api/..%c0%afadmin", wantErr: true},
	{name: "invalid UTF-8 byte", in: "/a/%ff", wantErr: true},
	{name: "raw invalid UTF-8 byte", in: "/a/\xff", wantErr: true},
	{name: "encoded UTF-16 surrogate", in: "/a/%ed%a0%80", wantErr: true},
	{name: "fullwidth slash", in: "/api/..%ef%bc%8fadmin", wantErr: true},
	{name: "fullwidth dotdot", in: "/api/%ef%bc%8e%ef%bc%8e/admin", wantErr: true},
	{name: "fullwidth backslash", in: "/api/..%EF%BC%BCadmin", wantErr: true},
	{name: "two dot leader", in: "/api/%e2%80%a5/admin", wantErr: true},

	// Request-target forms (RFC 9112 §3.2).
	{name: "absolute-form", in: "http://example.com/a/b?x", want: "/a/b"},
	{name: "absolute-form uppercase scheme", in: "HTTPS://example.com/a/../b", want: "/b"},
	{name: "absolute-form empty path", in: "http://example.com", want: "/"},
	{name: "absolute-form empty path query", in: "http://example.com?x=/admin", want: "/"},
	{name: "absolute-form encoded slash", in: "http://example.com/a%2fb", wantErr: true},
	{name: "absolute-form userinfo", in: "http://user@example.com/admin", wantErr: true},
	{name: "absolute-form backslash authority", in: `http://example.com\@evil/x`, wantErr: true},
	{name: "absolute-form empty authority", in: "http:///admin", wantErr: true},
	{name: "absolute-form other scheme", in: "ftp://example.com/a", wantErr: true},
	{name: "scheme-relative is a path", in: "//example.com/admin", want: "/example.com/admin"},
	{name: "asterisk-form", in: "*", wantErr: true},
	{name: "authority-form", in: "example.com:443", wantErr: true},
	{name: "empty", in: "", wantErr: true},
	{name: "relative", in: "api/x", wantErr: true},
	{name: "only query", in: "?x=1", wantErr: true},

	{name: "very long path", in: "/" + strings.Repeat("seg/", 2000), want: "/" + strings.Repeat("seg/", 2000)},
}

func TestNormalizePath(t *testing.T) {
	if len(hostilePaths) < 40 {
		t.Fatalf("hostilePaths has %d cases; want at least 40", len(hostilePaths))
	}
	for _, tt := range hostilePaths {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizePath(tt.in)
			switch {
			case tt.wantErr && err == nil:
				t.Fatalf("NormalizePath(%q) = %q; want error", tt.in, got)
			case tt.wantErr && !errors.Is(err, ErrBadPath):
				t.Fatalf("NormalizePath(%q) error = %v; want ErrBadPath", tt.in, err)
			case !tt.wantErr && err != nil:
				t.Fatalf("NormalizePath(%q) error = %v; want %q", tt.in, err, tt.want)
			case got != tt.want:
				t.Fatalf("NormalizePath(%q) = %q; want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestDecodePath(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{name: "root", in: "/", want: "/"},
		{name: "plain", in: "/api/x/", want: "/api/x/"},
		{name: "space", in: "/a%20b", want: "/a b"},
		{name: "unicode", in: "/caf%C3%A9", want: "/café"},
		{name: "unsafe ASCII", in: "/a/%3Cscript%3E", want: "/a/<script>"},
		{name: "invalid escape unchanged", in: "/a%zz", want: "/a%zz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := DecodePath(tt.in); got != tt.want {
				t.Errorf("DecodePath(%q) = %q; want %q", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzNormalizePath checks the properties the proxy's security rests on for
// any input NormalizePath accepts. The hostile table is the seed corpus, so
// these properties also run over every attack case in a plain `go test`.
func FuzzNormalizePath(f *testing.F) {
	for _, tt := range hostilePaths {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := NormalizePath(in)
		if err != nil {
			if !errors.Is(err, ErrBadPath) {
				t.Fatalf("NormalizePath(%q) error = %v; want ErrBadPath", in, err)
			}
			return
		}
		checkCanonical(t, in, out)
		// The fast path must return what the full normalisation returns.
		if p, err := requestPath(in); err == nil && isCanonicalPath(p) {
			if slow, err := normalizeSlow(p); err != nil || slow != out {
				t.Fatalf("NormalizePath(%q) = %q by the fast path; the full steps give %q, %v", in, out, slow, err)
			}
		}
	})
}

// checkCanonical asserts the invariants of a NormalizePath result out.
func checkCanonical(t *testing.T, in, out string) {
	t.Helper()
	if again, err := NormalizePath(out); err != nil || again != out {
		t.Fatalf("NormalizePath(%q) = %q, %v; want %q, nil (not idempotent; input %q)", out, again, err, out, in)
	}
	if !strings.HasPrefix(out, "/") {
		t.Fatalf("NormalizePath(%q) = %q; want a leading '/'", in, out)
	}
	if strings.Contains(out, "//") || strings.ContainsAny(out, "\\;#?") {
		t.Fatalf("NormalizePath(%q) = %q; contains '//' or one of \\ ; # ?", in, out)
	}
	for _, seg := range strings.Split(out, "/") {
		if seg == "." || seg == ".." {
			t.Fatalf("NormalizePath(%q) = %q; contains dot segment %q", in, out, seg)
		}
	}
	dec, err := url.PathUnescape(out)
	if err != nil {
		t.Fatalf("url.PathUnescape(%q) error = %v (input %q)", out, err, in)
	}
	if got := DecodePath(out); got != dec {
		t.Fatalf("DecodePath(%q) = %q; want %q", out, got, dec)
	}
	// The decoded path is already clean: no segment the backend could resolve.
	if clean := pathpkg.Clean(dec); clean != strings.TrimSuffix(dec, "/") && clean != dec {
		t.Fatalf("path.Clean(%q) = %q; decoded path of %q is not clean", dec, clean, in)
	}
	// Decoding then re-normalising gives the same path. A raw space is the one
	// byte the decoded form may hold that NormalizePath rejects unencoded.
	redo := strings.ReplaceAll(dec, " ", "%20")
	if again, err := NormalizePath(redo); err != nil || again != out {
		t.Fatalf("NormalizePath(%q) = %q, %v; want %q (decoded form of %q)", redo, again, err, out, in)
	}
}

// The fast path takes only paths the full steps leave unchanged.
func TestIsCanonicalPath(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"/", true},
		{"/api/bench", true},
		{"/api/bench/", true},
		{"/a.b/~c-d_e/!$&'()*+,=:@", true},
		{"//", false},
		{"/a//b", false},
		{"/a/./b", false},
		{"/a/../b", false},
		{"/a/..", false},
		{"/.", false},
		{"/%41", false},
		{"/a;b", false},
		{"/a b", false},
		{"/é", false},
		{"/a\\b", false},
	}
	for _, tt := range tests {
		if got := isCanonicalPath(tt.in); got != tt.want {
			t.Errorf("isCanonicalPath(%q) = %v; want %v", tt.in, got, tt.want)
		}
		if tt.want {
			if slow, err := normalizeSlow(tt.in); err != nil || slow != tt.in {
				t.Errorf("normalizeSlow(%q) = %q, %v; want it unchanged", tt.in, slow, err)
			}
		}
	}
}

// setPath leaves RawPath empty only when EscapedPath gives back p without
// it: for every byte a canonical path may hold, and for escapes.
func TestSetPathEscapesBack(t *testing.T) {
	paths := []string{"/", "/api/items/7", "/a%20b", "/caf%C3%A9", "/a;b=c,d@e:f$g&h+i~j", "/a%2Bb"}
	for c := byte(0x21); c < 0x7f; c++ {
		paths = append(paths, "/x"+string(c)+"y")
	}
	verbatim := 0
	for _, in := range paths {
		p, err := NormalizePath(in)
		if err != nil {
			continue // not a path tollgate forwards
		}
		var u url.URL
		setPath(&u, p)
		if got := u.EscapedPath(); got != p || u.Path != DecodePath(p) {
			t.Errorf("%q: EscapedPath %q, Path %q; want %q and %q", p, got, u.Path, p, DecodePath(p))
		}
		if u.RawPath == "" {
			verbatim++
		}
	}
	if verbatim < 20 {
		t.Errorf("RawPath left empty for %d paths; want most plain ones", verbatim)
	}
}
