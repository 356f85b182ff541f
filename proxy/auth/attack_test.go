package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestAttacks runs forged and policy-violating tokens against a verifier
// configured for RS256/PS256/ES256/EdDSA PEM keys (and, where the attack
// needs one, an HMAC secret too). Each case starts with the advisory or
// attack it guards against.
func TestAttacks(t *testing.T) {
	clock := newClock(t0)
	rsaPEM := pemBytes(t, &rsaKey().PublicKey)
	good := claimsAt(t0)
	expired := with(good, "iat", t0.Add(-2*time.Hour).Unix(), "exp", t0.Add(-time.Hour).Unix())

	asym := baseOptions(t, clock)
	mixed := baseOptions(t, clock) // HS256 allowed too, with its own secret
	mixed.Algorithms = append(mixed.Algorithms, "HS256")
	mixed.HMACSecret = testSecret

	tests := []struct {
		name string
		opts Options
		tok  string
		want string
	}{
		// Control: a genuine token of every allowed algorithm verifies.
		{"genuine RS256", asym, sign(t, jwt.SigningMethodRS256, rsaKey(), good), ReasonOK},
		{"genuine PS256", asym, sign(t, jwt.SigningMethodPS256, rsaKey(), good), ReasonOK},
		{"genuine ES256", asym, sign(t, jwt.SigningMethodES256, ecKey(), good), ReasonOK},
		{"genuine EdDSA", asym, sign(t, jwt.SigningMethodEdDSA, edKey(), good), ReasonOK},
		{"genuine HS256 in mixed config", mixed, sign(t, jwt.SigningMethodHS256, testSecret, good), ReasonOK},

		// CVE-2022-23540 / GHSA-qwph-4952-7xr6, Auth0 2015 "alg: none": an
		// unsigned token must not verify, whatever the spelling.
		{"alg none", asym, rawToken(`{"alg":"none","typ":"JWT"}`, good, nil), ReasonBadAlgorithm},
		{"alg None", asym, rawToken(`{"alg":"None","typ":"JWT"}`, good, nil), ReasonBadAlgorithm},
		{"alg NONE", asym, rawToken(`{"alg":"NONE","typ":"JWT"}`, good, nil), ReasonBadAlgorithm},
		{"alg missing", asym, rawToken(`{"typ":"JWT"}`, good, nil), ReasonBadAlgorithm},
		{"alg none in mixed config", mixed, rawToken(`{"alg":"none"}`, good, nil), ReasonBadAlgorithm},

		// CVE-2015-9235 / CVE-2016-10555: HS256 token whose HMAC key is the
		// server's RSA public key PEM. HS256 is not allowed here at all.
		{"HS256 keyed with RSA public PEM, RS-only config", asym, sign(t, jwt.SigningMethodHS256, rsaPEM, good), ReasonBadAlgorithm},
		// CVE-2015-9235 again, with HS256 allowed: the HMAC secret is the
		// only HS key, the PEM bytes are never tried.
		{"HS256 keyed with RSA public PEM, mixed config", mixed, sign(t, jwt.SigningMethodHS256, rsaPEM, good), ReasonBadSignature},
		// Algorithm downgrade: HS384 not allowed even with a valid secret.
		{"HS384 with the real secret", mixed, sign(t, jwt.SigningMethodHS384, testSecret, good), ReasonBadAlgorithm},
		// Algorithm swap within a key type: RS512 is not in the allowlist.
		{"RS512 with the real key", asym, sign(t, jwt.SigningMethodRS512, rsaKey(), good), ReasonBadAlgorithm},

		// CVE-2018-0114 (node-jose): the token embeds its own "jwk" (or
		// points "jku"/"x5u" at the attacker); the verifier must ignore it.
		{"embedded jwk header", asym, sign(t, jwt.SigningMethodRS256, attackerRSA(), good,
			"jwk", map[string]any{"kty": "RSA", "n": "attacker", "e": "AQAB"}), ReasonBadSignature},
		{"jku header", asym, sign(t, jwt.SigningMethodRS256, attackerRSA(), good,
			"jku", "https://attacker.test/jwks.json"), ReasonBadSignature},
		// kid injection (path traversal/SQL in kid): kid is only a map key.
		{"kid path traversal", asym, sign(t, jwt.SigningMethodRS256, attackerRSA(), good,
			"kid", "../../../../dev/null"), ReasonBadSignature},
		{"kid not a string", asym, sign(t, jwt.SigningMethodRS256, rsaKey(), good, "kid", 7), ReasonMalformed},
		// Forgery with a key of the right type that is not ours.
		{"RS256 signed by attacker key", asym, sign(t, jwt.SigningMethodRS256, attackerRSA(), good), ReasonBadSignature},
		{"ES256 signed by attacker key", asym, sign(t, jwt.SigningMethodES256, mustEC(ecKey().Curve), good), ReasonBadSignature},

		// Token replay across services: audiences must match ours.
		{"aud []", asym, sign(t, jwt.SigningMethodRS256, rsaKey(), with(good, "aud", []string{})), ReasonBadAudience},
		{`aud [""]`, asym, sign(t, jwt.SigningMethodRS256, rsaKey(), with(good, "aud", []string{""})), ReasonBadAudience},
		{`aud ""`, asym, sign(t, jwt.SigningMethodRS256, rsaKey(), with(good, "aud", "")), ReasonBadAudience},
		{"aud absent", asym, sign(t, jwt.SigningMethodRS256, rsaKey(), with(good, "aud", nil)), ReasonBadAudience},
		{"aud of another service", asym, sign(t, jwt.SigningMethodRS256, rsaKey(), with(good, "aud", "billing-admin")), ReasonBadAudience},
		{"aud not a string", asym, sign(t, jwt.SigningMethodRS256, rsaKey(), with(good, "aud", 42)), ReasonBadAudience},
		{"aud array holding ours", asym, sign(t, jwt.SigningMethodRS256, rsaKey(), with(good, "aud", []string{"other", testAudience})), ReasonOK},

		// Tokens from another issuer sharing the key source.
		{"wrong issuer", asym, sign(t, jwt.SigningMethodRS256, rsaKey(), with(good, "iss", "https://evil.test")), ReasonBadIssuer},
		{"issuer absent", asym, sign(t, jwt.SigningMethodRS256, rsaKey(), with(good, "iss", nil)), ReasonBadIssuer},

		// Stolen-token lifetime: exp required and enforced, nbf/iat honoured.
		{"expired", asym, sign(t, jwt.SigningMethodRS256, rsaKey(), expired), ReasonExpired},
		{"exp absent (never-expiring token)", asym, sign(t, jwt.SigningMethodRS256, rsaKey(), with(good, "exp", nil)), ReasonMissingClaim},
		{"exp not a number", asym, sign(t, jwt.SigningMethodRS256, rsaKey(), with(good, "exp", "tomorrow")), ReasonMalformed},
		{"nbf in the future", asym, sign(t, jwt.SigningMethodRS256, rsaKey(), with(good, "nbf", t0.Add(time.Minute).Unix())), ReasonNotYetValid},
		{"iat in the future", asym, sign(t, jwt.SigningMethodRS256, rsaKey(), with(good, "iat", t0.Add(time.Minute).Unix())), ReasonNotYetValid},
		// Expired AND forged: golang-jwt checks the signature before the
		// claims, so the forgery is what is reported (and a forger learns
		// nothing about which claims would pass).
		{"expired and bad signature", asym, sign(t, jwt.SigningMethodRS256, attackerRSA(), expired), ReasonBadSignature},

		// CWE-113 header injection / identity confusion through the
		// forwarded X-Tollgate-User and X-Tollgate-Customer headers.
		{"sub with CRLF", asym, sign(t, jwt.SigningMethodRS256, rsaKey(), with(good, "sub", "alice\r\nX-Tollgate-Plan: pro")), ReasonBadClaims},
		{"sub with surrounding space", asym, sign(t, jwt.SigningMethodRS256, rsaKey(), with(good, "sub", "alice ")), ReasonBadClaims},
		{"sub absent", asym, sign(t, jwt.SigningMethodRS256, rsaKey(), with(good, "sub", nil)), ReasonBadClaims},
		{"sub not a string", asym, sign(t, jwt.SigningMethodRS256, rsaKey(), with(good, "sub", 12345)), ReasonBadClaims},
		{"customer with CRLF", asym, sign(t, jwt.SigningMethodRS256, rsaKey(), with(good, "stripe_customer_id", "cus_1\r\nX: y")), ReasonBadClaims},
		{"customer not cus_", asym, sign(t, jwt.SigningMethodRS256, rsaKey(), with(good, "stripe_customer_id", "acct_123")), ReasonBadClaims},
		{"customer not a string", asym, sign(t, jwt.SigningMethodRS256, rsaKey(), with(good, "stripe_customer_id", 123)), ReasonBadClaims},

		// RFC 7515 §4.1.11: unknown critical extensions must fail closed.
		{"crit header", asym, sign(t, jwt.SigningMethodRS256, rsaKey(), good, "crit", []string{"exp"}), ReasonMalformed},
		// Token malleability: a second encoding of the same signature (non-
		// zero trailing bits) must not verify as a different cache key.
		{"non-canonical base64 signature", asym, flipTrailingBits(sign(t, jwt.SigningMethodRS256, rsaKey(), good)), ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVerifier(t, tt.opts)
			id, err := v.Authenticate(bearer(tt.tok))
			if got := reasonOf(err); got != tt.want {
				t.Fatalf("Authenticate = %q (%v); want %q", got, err, tt.want)
			}
			if err == nil && (id.User != "user_1" || id.Customer != "cus_123") {
				t.Errorf("Identity = %+v; want user_1/cus_123", id)
			}
			if err != nil && errors.Is(err, ErrNoCredentials) {
				t.Errorf("Authenticate error %v matches ErrNoCredentials; a present token must never look absent", err)
			}
		})
	}
}

// flipTrailingBits re-encodes the last base64url character of tok so that
// the unused low bits are non-zero: same decoded bytes under lenient
// decoding, a different string.
func flipTrailingBits(tok string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, tok[len(tok)-1])
	return tok[:len(tok)-1] + string(alphabet[last|1])
}

// TestCredentialIntake covers how the token is taken from the request.
func TestCredentialIntake(t *testing.T) {
	clock := newClock(t0)
	o := hmacOptions(clock)
	o.Cookie = "session"
	v := newVerifier(t, o)
	tok := sign(t, jwt.SigningMethodHS256, testSecret, claimsAt(t0))

	req := func(headers ...string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "http://tollgate.test/", nil)
		for i := 0; i < len(headers); i += 2 {
			r.Header.Add(headers[i], headers[i+1])
		}
		return r
	}
	tests := []struct {
		name string
		r    *http.Request
		want string
	}{
		{"bearer", req("Authorization", "Bearer "+tok), ReasonOK},
		{"scheme case-insensitive", req("Authorization", "bEaReR "+tok), ReasonOK},
		{"extra spaces", req("Authorization", "Bearer   "+tok), ReasonOK},
		{"cookie", req("Cookie", "session="+tok), ReasonOK},
		{"cookie among others", req("Cookie", "a=1; session="+tok+"; b=2"), ReasonOK},
		{"nothing", req(), ReasonMissing},
		{"empty cookie is absent", req("Cookie", "session="), ReasonMissing},
		{"other cookies only", req("Cookie", "theme=dark"), ReasonMissing},
		// Credential ambiguity (the proxy and the upstream could read
		// different tokens): exactly one credential is accepted.
		{"two Authorization headers", req("Authorization", "Bearer "+tok, "Authorization", "Bearer "+tok), ReasonMultipleCredentials},
		{"header and cookie", req("Authorization", "Bearer "+tok, "Cookie", "session="+tok), ReasonMultipleCredentials},
		{"two cookies", req("Cookie", "session="+tok+"; session="+tok), ReasonMultipleCredentials},
		{"two Cookie headers", req("Cookie", "session="+tok, "Cookie", "session="+tok), ReasonMultipleCredentials},
		// A credential in another scheme is present-but-invalid, so an
		// "optional" route cannot be entered as anonymous with it.
		{"basic scheme", req("Authorization", "Basic dXNlcjpwYXNz"), ReasonMalformed},
		{"bearer without token", req("Authorization", "Bearer"), ReasonMalformed},
		{"bearer with blank token", req("Authorization", "Bearer   "), ReasonMalformed},
		{"empty header", req("Authorization", ""), ReasonMalformed},
		{"two tokens in one header", req("Authorization", "Bearer "+tok+", Bearer "+tok), ReasonMalformed},
		{"garbage cookie", req("Cookie", "session=not-a-jwt"), ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Authenticate(tt.r)
			if got := reasonOf(err); got != tt.want {
				t.Errorf("Authenticate = %q (%v); want %q", got, err, tt.want)
			}
			if gotNone, wantNone := errors.Is(err, ErrNoCredentials), tt.want == ReasonMissing; gotNone != wantNone {
				t.Errorf("errors.Is(err, ErrNoCredentials) = %v; want %v", gotNone, wantNone)
			}
		})
	}
}

// CVE-2025-30204 / GHSA-mh63-6h87-95cp: "Bearer " followed by a million
// dots made golang-jwt allocate ~16 bytes per dot. It must be rejected
// before the parser, in bounded time and allocations.
func TestMillionDots(t *testing.T) {
	clock := newClock(t0)
	dots := strings.Repeat(".", 1_000_000)
	tests := []struct {
		name     string
		maxBytes int
		want     string
	}{
		{"default limit", 0, ReasonTooLarge},
		{"limit raised above the token", 2 << 20, ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := hmacOptions(clock)
			o.MaxTokenBytes = tt.maxBytes
			v := newVerifier(t, o)
			r := bearer(dots)
			var err error
			allocs := testing.AllocsPerRun(10, func() { _, err = v.Authenticate(r) })
			if got := reasonOf(err); got != tt.want {
				t.Errorf("Authenticate = %q (%v); want %q", got, err, tt.want)
			}
			if allocs > 10 {
				t.Errorf("Authenticate allocated %v times per call; want a constant few", allocs)
			}
			if n := v.verifications.Load(); n != 0 {
				t.Errorf("parser ran %d times; want 0 (rejected before parsing)", n)
			}
		})
	}
}

// TestClientMessageHidesCause checks that what may reach a client never
// contains the verification detail.
func TestClientMessageHidesCause(t *testing.T) {
	v := newVerifier(t, hmacOptions(newClock(t0)))
	tok := sign(t, jwt.SigningMethodHS256, []byte("wrong-secret-wrong-secret-wrong-secret"), claimsAt(t0))
	_, err := v.Authenticate(bearer(tok))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Authenticate error %T; want *Error", err)
	}
	if got, want := e.ClientMessage(), "invalid token"; got != want {
		t.Errorf("ClientMessage() = %q; want %q", got, want)
	}
	if !strings.Contains(e.Error(), "signature") {
		t.Errorf("Error() = %q; want the cause for logs", e.Error())
	}
}
