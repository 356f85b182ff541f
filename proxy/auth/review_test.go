package auth

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// Key rotation after a compromise: a token verified under a key the issuer
// then withdrew from its JWKS must not keep authenticating from the
// verified-token cache until its exp.
func TestWithdrawnKeyEndsCachedTokens(t *testing.T) {
	clock := newClock(t0)
	srv := newJWKSServer(t, jwksJSON(t, jwk{"old", "RS256", &rsaKey().PublicKey}))
	v := jwksVerifier(t, srv, clock)
	tok := sign(t, jwt.SigningMethodRS256, rsaKey(), claimsAt(t0), "kid", "old")
	if _, err := v.Authenticate(bearer(tok)); err != nil {
		t.Fatal(err)
	}
	srv.set("ok", jwksJSON(t, jwk{"new", "RS256", &rsaKey2().PublicKey}))
	clock.Advance(DefaultJWKSRefetchCooldown)
	if !v.jwks.refetch(context.Background()) {
		t.Fatal("refetch did not run")
	}
	clock.Advance(time.Minute) // still long before exp
	if _, err := v.Authenticate(bearer(tok)); err == nil {
		t.Error("a token signed by a withdrawn key still authenticates (served from the cache)")
	}
}

// A JWKS URL may carry an access token in its query; a failed fetch's
// error (a *url.Error prints the whole URL) must not put it in the log.
func TestJWKSErrorDoesNotLogTheQuery(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // connection refused
	var buf testrig.LogBuffer
	v, err := New(context.Background(), Options{
		Algorithms: []string{"RS256"}, Audience: []string{"api"},
		JWKSURL: "http://" + addr + "/jwks?access_token=SUPERSECRET",
		Logger:  slog.New(slog.NewTextHandler(&buf, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	testrig.Eventually(t, "a failed fetch logged", func() bool { return strings.Contains(buf.String(), "JWKS fetch failed") })
	v.Close()
	if strings.Contains(buf.String(), "SUPERSECRET") {
		t.Errorf("the JWKS URL's query reached the log:\n%s", buf.String())
	}
	// Issue 12: the message matches the state: with no keys ever fetched
	// there are no "previous keys" to keep.
	if got := buf.String(); strings.Contains(got, "keeping previous keys") || !strings.Contains(got, "no keys yet") {
		t.Errorf("first failed fetch logged %q; want it to say there are no keys yet", got)
	}
}

// Proxy/upstream disagreement on cookies: net/http drops a cookie value it
// finds invalid, an upstream parser may take it. Two cookies of the token's
// name are two credentials, whatever their bytes.
func TestDuplicateTokenCookieRefusedWhateverItsBytes(t *testing.T) {
	o := hmacOptions(newClock(t0))
	o.Cookie = "tok"
	v := newVerifier(t, o)
	good := sign(t, jwt.SigningMethodHS256, testSecret, claimsAt(t0))
	for _, c := range []string{
		`tok=EVIL.x.y\; tok=` + good,
		`tok="x.y.z; tok=` + good,
		"tok=\x80a.b.c; tok=" + good,
		`tok=` + good + `; tok=a b.c`,
	} {
		r := httptest.NewRequest("GET", "http://x/", nil)
		r.Header.Set("Cookie", c)
		if _, err := v.Authenticate(r); reasonOf(err) != ReasonMultipleCredentials {
			t.Errorf("Cookie %.30q… = %s; want %s", c, reasonOf(err), ReasonMultipleCredentials)
		}
	}
	r := httptest.NewRequest("GET", "http://x/", nil)
	r.Header.Set("Cookie", "other=1; tok="+good+"; tok=")
	if _, err := v.Authenticate(r); err != nil {
		t.Errorf("one token cookie plus an empty one = %v; want accepted", err)
	}
}

// An Authorization value without a scheme may be a raw API key: the error
// (logged by the proxy) must not contain any of its bytes.
func TestForeignAuthorizationNotEchoed(t *testing.T) {
	v := newVerifier(t, hmacOptions(newClock(t0)))
	r := httptest.NewRequest("GET", "http://x/", nil)
	r.Header.Set("Authorization", "sk_live_51HxyzSECRETKEYMATERIAL")
	_, err := v.Authenticate(r)
	if err == nil || strings.Contains(err.Error(), "sk_live") || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("error = %v; want a refusal that does not echo the value", err)
	}
}

// A JWK whose key_ops exclude "verify" (an encryption key) is not used.
func TestKeyOpsWithoutVerifyIgnored(t *testing.T) {
	body := `{"keys":[` + strings.TrimSuffix(strings.TrimPrefix(string(jwksJSON(t, jwk{"enc", "RS256", &rsaKey().PublicKey})), `{"keys":[`), `]}`)
	body = strings.Replace(body, `"kid":"enc"`, `"kid":"enc","key_ops":["encrypt"]`, 1) + `]}`
	if _, err := parseJWKS([]byte(body), []string{"RS256"}, slog.New(slog.DiscardHandler)); err == nil {
		t.Errorf("a set whose only key is for encryption was accepted")
	}
}

// While the link store is down, a remembered "no link" must not stand in
// for an answer: the user may have just paid. 503 (retry), not 402.
func TestStaleNoLinkIsNotUsedWhenTheStoreFails(t *testing.T) {
	clock := newClock(t0)
	links := &fakeLinks{links: map[string]string{}}
	o := hmacOptions(clock)
	o.Links = links
	v := newVerifier(t, o)
	tok := sign(t, jwt.SigningMethodHS256, testSecret, with(claimsAt(t0), "stripe_customer_id", nil))
	if id, err := v.Authenticate(bearer(tok)); err != nil || id.Customer != "" {
		t.Fatalf("first lookup = %+v, %v; want no customer", id, err)
	}
	clock.Advance(2 * time.Second) // past the 1s "no link" reuse
	links.set("user_1", "", errors.New("store down"))
	if _, err := v.Authenticate(bearer(tok)); !errors.Is(err, ErrLinkUnavailable) {
		t.Errorf("store down with only a stale 'no link' = %v; want ErrLinkUnavailable", err)
	}
}

// One key of the wrong shape must not make the whole set unusable.
func TestMalformedKeyDoesNotSpoilTheSet(t *testing.T) {
	good := strings.TrimSuffix(strings.TrimPrefix(string(jwksJSON(t, jwk{"good", "RS256", &rsaKey().PublicKey})), `{"keys":[`), `]}`)
	body := `{"keys":[{"kty":"RSA","kid":5,"n":7},` + good + `]}`
	keys, err := parseJWKS([]byte(body), []string{"RS256"}, slog.New(slog.DiscardHandler))
	if err != nil || len(keys) != 1 || keys[0].kid != "good" {
		t.Errorf("parseJWKS = %d keys, %v; want the good key", len(keys), err)
	}
}
