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
	tok, e := extractCandidate(r, cookie, maxBytes)
	if e != nil {
		return "", e
	}
	return checkShape(tok)
}

// extractCandidate is extractToken without the shape check (checkShape),
// which the verifier leaves to tokens its cache does not hold: a cached
// token passed it before it was verified, and a hit is byte for byte that
// token.
func extractCandidate(r *http.Request, cookie string, maxBytes int) (string, *Error) {
	headers := r.Header["Authorization"]
	var cookies []string
	if cookie != "" {
		cookies = namedCookies(r.Header["Cookie"], cookie)
	}
	switch n := len(headers) + len(cookies); {
	case n == 0:
		return "", fail(ReasonMissing, ErrNoCredentials)
	case n > 1:
		return "", failf(ReasonMultipleCredentials, "%d Authorization headers and %d %q cookies", len(headers), len(cookies), cookie)
	}
	if len(cookies) == 1 {
		return checkLength(cookies[0], maxBytes)
	}
	return bearerCandidate(headers[0], maxBytes)
}

// namedCookies returns the non-empty values of every cookie called name,
// scanning the raw headers. net/http's parser silently drops values it
// finds invalid (a backslash, a quote, a non-ASCII byte), while an
// upstream's parser may keep them: "tok=EVIL\; tok=<valid>" must count as
// two credentials, not one. An empty value (left behind by a logout) is
// "no credentials", not a bad one.
func namedCookies(headers []string, name string) []string {
	var out []string
	for _, h := range headers {
		for _, part := range strings.Split(h, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
			if strings.TrimSpace(k) == name && v != "" {
				out = append(out, strings.Trim(v, `"`))
			}
		}
	}
	return out
}

// bearerToken parses an Authorization header value (RFC 6750 §2.1; the
// scheme is case-insensitive per RFC 9110 §11.1). A header with another
// scheme is a present-but-invalid credential: an "auth: optional" route must
// not pass it through as anonymous.
func bearerToken(h string, maxBytes int) (string, *Error) {
	tok, e := bearerCandidate(h, maxBytes)
	if e != nil {
		return "", e
	}
	return checkShape(tok)
}

// bearerCandidate is bearerToken without the shape check.
func bearerCandidate(h string, maxBytes int) (string, *Error) {
	if plainBearer(h) { // what every request sends: bearerAny's answer, for less (issue 13)
		return checkLength(h[len("Bearer "):], maxBytes)
	}
	return bearerAny(h, maxBytes)
}

// bearerAny is bearerCandidate for any spelling and spacing.
func bearerAny(h string, maxBytes int) (string, *Error) {
	scheme, tok, _ := strings.Cut(strings.TrimSpace(h), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		// Never log the value: it may be a raw API key sent without a
		// scheme. Name well-known schemes only.
		kind := "an unknown scheme"
		if strings.EqualFold(scheme, "Basic") {
			kind = "Basic"
		}
		return "", failf(ReasonMalformed, "Authorization is %s (%d bytes), not Bearer", kind, len(h))
	}
	return checkLength(strings.TrimLeft(tok, " "), maxBytes)
}

// plainBearer reports a value bearerAny would read as "Bearer " and the
// rest: the scheme spelt so, one space, and a token that starts with no
// space and ends with a printable ASCII byte (strings.TrimSpace would
// remove any space at the end, ASCII or not).
func plainBearer(h string) bool {
	n := len(h)
	return n > len("Bearer ") && h[:len("Bearer ")] == "Bearer " && h[len("Bearer ")] != ' ' &&
		h[n-1] > ' ' && h[n-1] < 0x7f
}

// checkLength rejects tokens that are too long, before they are hashed,
// compared or decoded.
func checkLength(tok string, maxBytes int) (string, *Error) {
	if len(tok) > maxBytes {
		return "", failf(ReasonTooLarge, "token of %d bytes exceeds %d", len(tok), maxBytes)
	}
	return tok, nil
}

// checkShape rejects, before any decoding, tokens not shaped like a JWS
// compact serialisation: exactly three base64url segments. It is linear in
// the token with no allocation on success, so a megabyte of dots
// (CVE-2025-30204) costs one scan.
func checkShape(tok string) (string, *Error) {
	if n := strings.Count(tok, "."); n != 2 {
		return "", failf(ReasonMalformed, "token has %d segments, want 3", n+1)
	}
	// Branch-free scan: this runs on every token the cache does not hold.
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
