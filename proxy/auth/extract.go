package auth

import (
	"net/http"
	"strings"
)

// extractToken returns the single token a request carries.
//
// Exactly one credential is accepted. With two (two Authorization headers,
// header plus cookie, the cookie twice) the proxy and the upstream could each
// pick a different one, so the request is rejected rather than guessed at.
func extractToken(r *http.Request, cookie string, maxBytes int) (string, *Error) {
	headers := r.Header["Authorization"]
	var cookies []*http.Cookie
	if cookie != "" {
		for _, c := range r.CookiesNamed(cookie) {
			// Logout commonly leaves an empty cookie behind; that is
			// "no credentials", not a bad one.
			if c.Value != "" {
				cookies = append(cookies, c)
			}
		}
	}
	switch n := len(headers) + len(cookies); {
	case n == 0:
		return "", fail(ReasonMissing, ErrNoCredentials)
	case n > 1:
		return "", failf(ReasonMultipleCredentials, "%d Authorization headers and %d %q cookies", len(headers), len(cookies), cookie)
	}
	if len(cookies) == 1 {
		return checkToken(cookies[0].Value, maxBytes)
	}
	return bearerToken(headers[0], maxBytes)
}

// bearerToken parses an Authorization header value (RFC 6750 §2.1; the
// scheme is case-insensitive per RFC 9110 §11.1). A header with another
// scheme is a present-but-invalid credential: an "auth: optional" route must
// not pass it through as anonymous.
func bearerToken(h string, maxBytes int) (string, *Error) {
	scheme, tok, _ := strings.Cut(strings.TrimSpace(h), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		if len(scheme) > 16 { // do not echo an attacker's megabyte into logs
			scheme = scheme[:16] + "…"
		}
		return "", failf(ReasonMalformed, "Authorization scheme %q is not Bearer", scheme)
	}
	return checkToken(strings.TrimLeft(tok, " "), maxBytes)
}

// checkToken rejects, before any decoding, tokens that are too long or not
// shaped like a JWS compact serialisation: exactly three base64url segments.
// It is linear in the token with no allocation on success, so a megabyte of
// dots (CVE-2025-30204) costs one scan.
func checkToken(tok string, maxBytes int) (string, *Error) {
	if len(tok) > maxBytes {
		return "", failf(ReasonTooLarge, "token of %d bytes exceeds %d", len(tok), maxBytes)
	}
	if n := strings.Count(tok, "."); n != 2 {
		return "", failf(ReasonMalformed, "token has %d segments, want 3", n+1)
	}
	// Branch-free scan: this runs on every request, cache hits included.
	var bad byte
	for i := 0; i < len(tok); i++ {
		bad |= notTokenByte[tok[i]]
	}
	if bad != 0 {
		return "", failf(ReasonMalformed, "token has a byte outside base64url")
	}
	return tok, nil
}

// notTokenByte is 1 for bytes that cannot appear in a compact JWS.
var notTokenByte = func() (t [256]byte) {
	for i := range t {
		c := byte(i)
		ok := 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			t[i] = 1
		}
	}
	return t
}()
