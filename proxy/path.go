package proxy

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// ErrBadPath is wrapped by every NormalizePath error. The caller answers 400:
// a request whose path cannot be given one unambiguous meaning is never
// routed, gated or forwarded.
var ErrBadPath = errors.New("proxy: bad request path")

// NormalizePath turns a raw request-target (http.Request.RequestURI) into the
// one canonical escaped path that tollgate matches routes against and forwards
// upstream. Matching and forwarding the same string is what keeps the route
// that was checked and the resource the application serves from diverging
// (the classic proxy/backend parser-differential bypass).
//
// The query is dropped. Absolute-form ("http://host/p") is reduced to its path;
// asterisk-form ("*"), authority-form and relative paths are errors. Bytes that
// backends disagree about are rejected rather than "fixed": raw '#', '\', ';',
// space and control bytes; encoded '/', '\', ';', '?', '#', '%' and control
// bytes; invalid escapes and invalid UTF-8. Each segment is decoded exactly
// once, then dot segments are removed (RFC 3986 §5.2.4, clamped at the root),
// empty segments are dropped, a trailing slash is kept, and every segment is
// re-encoded canonically (see appendSegment). The result is idempotent:
// NormalizePath(out) == out.
func NormalizePath(requestURI string) (string, error) {
	p, err := requestPath(requestURI)
	if err != nil {
		return "", err
	}
	if isCanonicalPath(p) {
		return p, nil // what the steps below return for it, without their allocations
	}
	return normalizeSlow(p)
}

// normalizeSlow is NormalizePath of a path that is not canonical already.
func normalizeSlow(p string) (string, error) {
	if err := checkRawPath(p); err != nil {
		return "", err
	}
	segs, trailingSlash, err := resolveSegments(p)
	if err != nil {
		return "", err
	}
	return encodePath(segs, trailingSlash), nil
}

// isCanonicalPath reports whether p (a path starting with '/') is its own
// normal form: only bytes appendSegment writes raw (so no escape, nothing
// checkRawPath or checkUnicode refuses), no empty segment but a trailing
// one, no dot segment. Most requests' paths are; for them NormalizePath
// costs one scan. FuzzNormalizePath checks that the slow path agrees.
func isCanonicalPath(p string) bool {
	seg := 1 // where the current segment starts
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			if !isPchar(p[i]) {
				return false
			}
			continue
		}
		switch p[seg:i] {
		case ".", "..":
			return false
		case "":
			if i < len(p) { // "//": an empty segment
				return false
			}
		}
		seg = i + 1
	}
	return true
}

// DecodePath returns the decoded form of a NormalizePath result, the value
// for url.URL.Path when RawPath is the escaped form. Because NormalizePath
// rejects encoded '/', decoding cannot merge segments. An escaped string that
// does not decode (never a NormalizePath result) is returned unchanged.
func DecodePath(escaped string) string {
	if strings.IndexByte(escaped, '%') < 0 {
		return escaped // nothing to decode (the usual case), without url's scan
	}
	p, err := url.PathUnescape(escaped)
	if err != nil {
		return escaped
	}
	return p
}

// setPath sets u's path to p, a NormalizePath result: Path decoded, and
// RawPath p, unless p is what url.URL.EscapedPath makes of Path on its own
// (no escape, and no byte Go would escape), when RawPath stays empty and
// EscapedPath need not verify it (unescape it and compare) each time the
// request is forwarded and written. Either way EscapedPath() is p.
func setPath(u *url.URL, p string) {
	u.Path, u.RawPath = DecodePath(p), p
	for i := 0; i < len(p); i++ {
		if !pathVerbatim[p[i]] {
			return
		}
	}
	u.RawPath = ""
}

// pathVerbatim holds the bytes net/url leaves unescaped in a path: the
// unreserved characters and $&+,/:;=@ (url.shouldEscape, encodePath).
var pathVerbatim = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.~$&+,/:;=@", byte(c)) >= 0
	}
	return t
}()

// requestPath extracts the path part of a request-target (RFC 9112 §3.2).
func requestPath(target string) (string, error) {
	p, _, _ := strings.Cut(target, "?")
	if strings.HasPrefix(p, "/") {
		return p, nil
	}
	if p == "*" {
		return "", fmt.Errorf("%w: asterisk-form request-target", ErrBadPath)
	}
	rest, ok := cutHTTPScheme(p)
	if !ok {
		return "", fmt.Errorf("%w: not origin-form or absolute-form", ErrBadPath)
	}
	authority, p := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority, p = rest[:i], rest[i:]
	}
	if err := checkAuthority(authority); err != nil {
		return "", err
	}
	if p == "" {
		// RFC 9110 §4.2.3: an empty path in an http(s) URI is "/".
		return "/", nil
	}
	return p, nil
}

// cutHTTPScheme removes a case-insensitive "http://" or "https://" prefix.
func cutHTTPScheme(s string) (rest string, ok bool) {
	for _, scheme := range []string{"http://", "https://"} {
		if len(s) >= len(scheme) && strings.EqualFold(s[:len(scheme)], scheme) {
			return s[len(scheme):], true
		}
	}
	return "", false
}

// checkAuthority rejects an absolute-form authority that a backend could read
// differently from Go: userinfo (RFC 9110 §4.2.4 says to treat it as an error;
// "http://trusted@evil/" is a phishing and SSRF staple), '\' (WHATWG parsers
// read it as '/'), '#', and whitespace or control bytes.
func checkAuthority(a string) error {
	if a == "" {
		return fmt.Errorf("%w: empty authority", ErrBadPath)
	}
	for i := 0; i < len(a); i++ {
		if c := a[i]; c == '@' || c == '\\' || c == '#' || c <= ' ' || c == 0x7f {
			return fmt.Errorf("%w: byte %q in authority", ErrBadPath, c)
		}
	}
	return nil
}

// checkRawPath rejects bytes that must never appear unencoded in a path:
// '#' (a fragment some servers cut and others keep), '\' (a separator on
// Windows and in WHATWG URL parsers), ';' (path parameters: Tomcat and Spring
// strip ";..." after a proxy matched, so "/api/..;/admin" reaches /admin;
// Orange Tsai, "Breaking Parser Logic", Black Hat USA 2018), and space and
// control bytes (request splitting, log injection).
func checkRawPath(p string) error {
	for i := 0; i < len(p); i++ {
		if c := p[i]; c == '#' || c == '\\' || c == ';' || c <= ' ' || c == 0x7f {
			return fmt.Errorf("%w: raw byte %q at offset %d", ErrBadPath, c, i)
		}
	}
	return nil
}

// resolveSegments decodes each '/'-separated segment of p once and applies
// RFC 3986 remove_dot_segments to the decoded segments, so "%2e%2e" is "..".
// Dot segments and empty segments at the end leave a trailing slash, as
// remove_dot_segments does ("/a/b/." is "/a/b/", "/a/.." is "/").
func resolveSegments(p string) (segs []string, trailingSlash bool, err error) {
	for _, raw := range strings.Split(p[1:], "/") {
		seg, err := decodeSegment(raw)
		if err != nil {
			return nil, false, err
		}
		switch seg {
		case "", ".":
			trailingSlash = true
		case "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
			trailingSlash = true
		default:
			segs = append(segs, seg)
			trailingSlash = false
		}
	}
	return segs, trailingSlash, nil
}

// decodeSegment percent-decodes one segment. Decoded bytes that would change
// the path's structure or be decoded again downstream are errors, so the
// application sees exactly the segments tollgate matched.
func decodeSegment(raw string) (string, error) {
	dec := raw
	if strings.IndexByte(raw, '%') >= 0 {
		var err error
		if dec, err = unescapeSegment(raw); err != nil {
			return "", err
		}
	}
	if err := checkUnicode(dec); err != nil {
		return "", err
	}
	return dec, nil
}

func unescapeSegment(raw string) (string, error) {
	b := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		if raw[i] != '%' {
			b = append(b, raw[i])
			continue
		}
		if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
			return "", fmt.Errorf("%w: invalid escape at offset %d of segment", ErrBadPath, i)
		}
		c := unhex(raw[i+1])<<4 | unhex(raw[i+2])
		if forbiddenDecoded(c) {
			return "", fmt.Errorf("%w: encoded %q", ErrBadPath, c)
		}
		b = append(b, c)
		i += 2
	}
	return string(b), nil
}

// forbiddenDecoded reports whether a byte may not come from an escape:
// '/' and '\' (a backend that decodes before splitting sees "..%2f" as a
// traversal, CVE-2007-0450 in Tomcat; the same with %5c on Windows backends),
// ';' and '?' and '#' (path parameters, query, fragment after one decode),
// '%' (a second decode turns "%252e" into ".", double-decoding bypasses such
// as CVE-2001-0333 in IIS), and NUL and other control bytes (C string
// truncation, header injection via %0d%0a).
func forbiddenDecoded(c byte) bool {
	switch c {
	case '/', '\\', ';', '?', '#', '%':
		return true
	}
	return c < 0x20 || c == 0x7f
}

// checkUnicode rejects invalid UTF-8 and a few code points that some backends
// fold into path syntax. Invalid UTF-8 covers overlong encodings: a lenient
// decoder reads %c0%ae as '.' and %c0%af as '/' (CVE-2000-0884, IIS Unicode
// traversal). The code points are fullwidth and small forms of . / \ ; ? # %
// and their look-alikes, which Windows "best-fit" conversion and NFKC
// normalisation turn into ASCII ("WorstFit", CVE-2024-4577), so "．．／admin"
// could reach a backend as "../admin".
func checkUnicode(seg string) error {
	for i, r := range seg {
		if r < utf8.RuneSelf {
			continue
		}
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(seg[i:]); size <= 1 {
				return fmt.Errorf("%w: invalid UTF-8", ErrBadPath)
			}
		}
		if isPathConfusable(r) {
			return fmt.Errorf("%w: confusable code point %U", ErrBadPath, r)
		}
	}
	return nil
}

func isPathConfusable(r rune) bool {
	switch r {
	case '\uFF0E', '\uFF0F', '\uFF3C', '\uFF1B', '\uFF1F', '\uFF03', '\uFF05', // fullwidth . / \ ; ? # %
		'\uFE52', '\uFE68', '\uFE54', '\uFE56', '\uFE5F', '\uFE6A', // small . \ ; ? # %
		'\u2024', '\u2025', // one and two dot leader: NFKC "." and ".."
		'\u2215', // division slash: best-fit '/'
		'\u037E': // Greek question mark: NFC ';'
		return true
	}
	return false
}

// encodePath joins decoded segments into the canonical escaped path.
func encodePath(segs []string, trailingSlash bool) string {
	if len(segs) == 0 {
		return "/"
	}
	var b strings.Builder
	for _, s := range segs {
		b.WriteByte('/')
		appendSegment(&b, s)
	}
	if trailingSlash {
		b.WriteByte('/')
	}
	return b.String()
}

// appendSegment writes a decoded segment in canonical form: unreserved
// characters and the pchar sub-delims !$&'()*+,=:@ stay raw (';' never gets
// here), every other byte becomes %XX with uppercase hex (RFC 3986 §6.2.2.1).
// One spelling per decoded segment is what makes byte comparison of routes
// equal to comparison of meanings.
func appendSegment(b *strings.Builder, seg string) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if isPchar(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
}

// isPchar reports whether c is written raw in a canonical segment.
func isPchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', '=', ':', '@':
		return true
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
