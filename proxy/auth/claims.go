package auth

import (
	"context"
	"fmt"
	"log/slog"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

const (
	maxUserBytes     = 256
	maxCustomerBytes = 255
)

// identityClaims extracts user, customer and times from verified claims.
func (v *Verifier) identityClaims(claims jwt.MapClaims) (*verified, *Error) {
	user, ok := claims[v.o.UserClaim].(string)
	if !ok || !validUser(user) {
		return nil, failf(ReasonBadClaims, "claim %q must be a string of 1-%d bytes without control characters or surrounding spaces, got %s",
			v.o.UserClaim, maxUserBytes, describe(claims[v.o.UserClaim]))
	}
	ver := &verified{user: user, claims: claims}
	switch c := claims[v.o.CustomerClaim].(type) {
	case nil: // absent or null: ask Links
	case string:
		if c != "" && !validCustomerID(c) {
			return nil, failf(ReasonBadClaims, "claim %q must be a Stripe customer id (cus_…), got %s", v.o.CustomerClaim, describe(c))
		}
		if c != "" {
			ver.link.Store(&linkEntry{customer: c, claim: true})
		}
	default:
		return nil, failf(ReasonBadClaims, "claim %q must be a string, got %T", v.o.CustomerClaim, c)
	}
	// The parser has validated these (exp is required), so errors are
	// impossible here.
	exp, _ := claims.GetExpirationTime()
	ver.exp = exp.Time
	if nbf, _ := claims.GetNotBefore(); nbf != nil {
		ver.nbf = nbf.Time
	}
	if iat, _ := claims.GetIssuedAt(); iat != nil {
		ver.iat = iat.Time
	}
	return ver, nil
}

// validUser accepts what can be forwarded unambiguously in X-Tollgate-User:
// header values are trimmed and cannot hold CR/LF, so " alice" or "alice\r\n"
// would reach the upstream as someone else or break the request.
func validUser(s string) bool {
	if s == "" || len(s) > maxUserBytes || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	first, _ := utf8.DecodeRuneInString(s)
	last, _ := utf8.DecodeLastRuneInString(s)
	return !unicode.IsSpace(first) && !unicode.IsSpace(last)
}

// validCustomerID accepts Stripe customer ids: "cus_" then [A-Za-z0-9_].
func validCustomerID(s string) bool {
	if len(s) <= len("cus_") || len(s) > maxCustomerBytes || s[:4] != "cus_" {
		return false
	}
	for i := 4; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// describe renders a claim value for logs, bounded in size.
func describe(v any) string {
	s := fmt.Sprintf("%#v", v)
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return s
}

// linkedCustomer resolves ver's user → customer through Links, with a short
// cache, and remembers the entry used in ver (verified.link). When Links
// fails, a recent answer is used; without one the request fails with
// ReasonLinkUnavailable (503, not 401: the token is fine).
func (v *Verifier) linkedCustomer(ctx context.Context, ver *verified, now time.Time) (*linkEntry, *Error) {
	user := ver.user
	if e, ok := v.links.fresh(user, now); ok {
		ver.link.Store(e)
		return e, nil
	}
	customer, ok, err := v.o.Links.CustomerForUser(ctx, user)
	if err != nil {
		if e, ok := v.links.stale(user, now); ok {
			v.log.LogAttrs(ctx, slog.LevelWarn, "auth: user link lookup failed; using cached link",
				slog.Duration("age", now.Sub(e.at)), slog.String("error", err.Error()))
			return e, nil
		}
		return nil, fail(ReasonLinkUnavailable, fmt.Errorf("%w: %w", ErrLinkUnavailable, err))
	}
	if ok && !validCustomerID(customer) {
		v.log.LogAttrs(ctx, slog.LevelWarn, "auth: user link holds an invalid customer id; ignoring it",
			slog.String("customer", describe(customer)))
		ok = false
	}
	if !ok {
		customer = ""
	}
	e := &linkEntry{customer: customer, at: now}
	v.links.put(user, e)
	ver.link.Store(e)
	return e, nil
}
