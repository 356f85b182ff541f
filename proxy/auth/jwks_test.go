package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// jwksServer is a JWKS endpoint whose behaviour a test switches at will; it
// counts the fetches it receives.
type jwksServer struct {
	*httptest.Server
	hits atomic.Int64

	mu      sync.Mutex
	mode    string // "ok", "500", "garbage", "huge", "hang"
	body    []byte
	onFetch func() // when set, called on every fetch before it is answered
}

func newJWKSServer(t testing.TB, body []byte) *jwksServer {
	s := &jwksServer{mode: "ok", body: body}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(mode string, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = mode
	if body != nil {
		s.body = body
	}
}

func (s *jwksServer) serve(w http.ResponseWriter, r *http.Request) {
	s.hits.Add(1)
	s.mu.Lock()
	mode, body, onFetch := s.mode, s.body, s.onFetch
	s.mu.Unlock()
	if onFetch != nil {
		onFetch()
	}
	switch mode {
	case "ok", "raw":
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	case "500":
		http.Error(w, "boom", http.StatusInternalServerError)
	case "huge":
		// A valid-looking prefix followed by 2 MiB of whitespace.
		w.Write([]byte(`{"keys":[`))
		w.Write([]byte(strings.Repeat(" ", 2<<20)))
	case "hang":
		<-r.Context().Done() // until the client gives up or the server closes
	}
}

// jwk describes one key to publish.
type jwk struct {
	kid string
	alg string
	key any // public key
}

func jwksJSON(t testing.TB, keys ...jwk) []byte {
	t.Helper()
	var set jwkset.JWKSMarshal
	for _, k := range keys {
		j, err := jwkset.NewJWKFromKey(k.key, jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{KID: k.kid, ALG: jwkset.ALG(k.alg), USE: jwkset.UseSig},
		})
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, j.Marshal())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jwksOptions is a verifier for srv on clock, fully loaded before it returns.
func jwksVerifier(t testing.TB, srv *jwksServer, clock *testClock, mutate ...func(*Options)) *Verifier {
	t.Helper()
	o := Options{
		Algorithms: []string{"RS256", "PS256", "ES256", "EdDSA"},
		Issuer:     testIssuer,
		Audience:   []string{testAudience},
		JWKSURL:    srv.URL + "/jwks.json",
		Now:        clock.Now,
		Logger:     quietLogger(),
	}
	for _, m := range mutate {
		m(&o)
	}
	v := newVerifier(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := v.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestJWKSKeysArePinned(t *testing.T) {
	clock := newClock(t0)
	srv := newJWKSServer(t, jwksJSON(t,
		jwk{"rsa-rs256", "RS256", &rsaKey().PublicKey},
		jwk{"rsa-any", "", &rsaKey2().PublicKey},
		jwk{"ec", "", &ecKey().PublicKey},
		jwk{"ed", "", edKey().Public()},
	))
	v := jwksVerifier(t, srv, clock)
	c := claimsAt(t0)
	tests := []struct {
		name string
		tok  string
		want string
	}{
		{"RS256 on its RS256 key", sign(t, jwt.SigningMethodRS256, rsaKey(), c, "kid", "rsa-rs256"), ReasonOK},
		// Algorithm substitution on a JWK published with "alg": RS256.
		{"PS256 on the RS256-pinned key", sign(t, jwt.SigningMethodPS256, rsaKey(), c, "kid", "rsa-rs256"), ReasonBadAlgorithm},
		{"PS256 on an RSA key without alg", sign(t, jwt.SigningMethodPS256, rsaKey2(), c, "kid", "rsa-any"), ReasonOK},
		{"RS256 without kid tries every RS256 key", sign(t, jwt.SigningMethodRS256, rsaKey2(), c), ReasonOK},
		{"ES256", sign(t, jwt.SigningMethodES256, ecKey(), c, "kid", "ec"), ReasonOK},
		{"EdDSA", sign(t, jwt.SigningMethodEdDSA, edKey(), c, "kid", "ed"), ReasonOK},
		// Cross-type: an ES256 token naming the RSA key's kid.
		{"ES256 naming an RSA kid", sign(t, jwt.SigningMethodES256, ecKey(), c, "kid", "rsa-any"), ReasonBadAlgorithm},
		{"kid of another key, right alg", sign(t, jwt.SigningMethodRS256, rsaKey2(), c, "kid", "rsa-rs256"), ReasonBadSignature},
		// kid injection (path traversal in kid): it is only a lookup key.
		{"kid path traversal", sign(t, jwt.SigningMethodRS256, attackerRSA(), c, "kid", "../../../../dev/null"), ReasonUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Authenticate(bearer(tt.tok))
			if got := reasonOf(err); got != tt.want {
				t.Errorf("Authenticate = %q (%v); want %q", got, err, tt.want)
			}
		})
	}
}

// Key-rotation DoS: 1,000 tokens with random kids must cause at most one
// JWKS refetch per cooldown, counted at the JWKS server.
func TestJWKSUnknownKIDRefetchCooldown(t *testing.T) {
	clock := newClock(t0)
	srv := newJWKSServer(t, jwksJSON(t, jwk{"a", "RS256", &rsaKey().PublicKey}))
	v := jwksVerifier(t, srv, clock)
	if got := srv.hits.Load(); got != 1 {
		t.Fatalf("JWKS hits after start = %d; want 1", got)
	}
	randomKID := func() string {
		b := make([]byte, 8)
		rand.Read(b)
		return hex.EncodeToString(b)
	}
	attacker := mustEC(ecKey().Curve) // ECDSA signs fast; the alg is allowed, the kid never known
	flood := func(n int) {
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range n / 8 {
					tok := sign(t, jwt.SigningMethodES256, attacker, claimsAt(t0), "kid", randomKID())
					if _, err := v.Authenticate(bearer(tok)); reasonOf(err) != ReasonUnknownKey {
						t.Errorf("Authenticate(random kid) = %v; want %s", err, ReasonUnknownKey)
					}
				}
			})
		}
		wg.Wait()
	}
	flood(1000)
	if got, want := srv.hits.Load(), int64(2); got != want {
		t.Errorf("JWKS hits after 1000 random kids = %d; want %d (start + one refetch)", got, want)
	}
	clock.Advance(DefaultJWKSRefetchCooldown - time.Second)
	flood(100)
	if got, want := srv.hits.Load(), int64(2); got != want {
		t.Errorf("JWKS hits within the cooldown = %d; want %d", got, want)
	}
	clock.Advance(time.Second)
	flood(1000)
	if got, want := srv.hits.Load(), int64(3); got != want {
		t.Errorf("JWKS hits after the cooldown = %d; want %d", got, want)
	}
}

// A token signed with a freshly rotated key verifies on first sight: its
// unknown kid triggers the refetch, and the request waits for it.
func TestJWKSRotation(t *testing.T) {
	clock := newClock(t0)
	srv := newJWKSServer(t, jwksJSON(t, jwk{"old", "RS256", &rsaKey().PublicKey}))
	v := jwksVerifier(t, srv, clock)
	srv.set("ok", jwksJSON(t, jwk{"old", "RS256", &rsaKey().PublicKey}, jwk{"new", "RS256", &rsaKey2().PublicKey}))
	tok := sign(t, jwt.SigningMethodRS256, rsaKey2(), claimsAt(t0), "kid", "new")
	if _, err := v.Authenticate(bearer(tok)); err != nil {
		t.Errorf("Authenticate(rotated key) = %v; want ok", err)
	}
	// The retired key disappears with the next fetch.
	srv.set("ok", jwksJSON(t, jwk{"new", "RS256", &rsaKey2().PublicKey}))
	clock.Advance(DefaultJWKSRefetchCooldown)
	v.jwks.refetch(context.Background())
	old := sign(t, jwt.SigningMethodRS256, rsaKey(), claimsAt(t0), "kid", "old")
	if _, err := v.Authenticate(bearer(old)); reasonOf(err) != ReasonUnknownKey {
		t.Errorf("Authenticate(retired key) = %v; want %s", err, ReasonUnknownKey)
	}
}

// A token signed with a key the verifier has yet to fetch waits for the
// JWKS: its identity's time (Identity.At, which the gate decides at) is a
// reading after the fetch, not the one its time claims were checked
// against before it, even when its customer claim needs no link read
// (issue 13).
func TestIdentityAtAfterAKeyFetch(t *testing.T) {
	clock := newClock(t0)
	srv := newJWKSServer(t, jwksJSON(t, jwk{"old", "RS256", &rsaKey().PublicKey}))
	v := jwksVerifier(t, srv, clock)
	const fetch = 2 * time.Second // a slow JWKS
	srv.mu.Lock()
	srv.body = jwksJSON(t, jwk{"old", "RS256", &rsaKey().PublicKey}, jwk{"new", "RS256", &rsaKey2().PublicKey})
	srv.onFetch = func() { clock.Advance(fetch) }
	srv.mu.Unlock()
	tok := sign(t, jwt.SigningMethodRS256, rsaKey2(), claimsAt(t0), "kid", "new")
	id, err := v.Authenticate(bearer(tok))
	if err != nil {
		t.Fatalf("Authenticate(rotated key) = %v; want ok", err)
	}
	if want := t0.Add(fetch); id.Customer == "" || !id.At.Equal(want) {
		t.Errorf("customer %q, At %v; want the claim's customer, at %v (after the fetch)", id.Customer, id.At, want)
	}
	// The next request is a cache hit: at its own check.
	clock.Advance(time.Second)
	want := clock.Now()
	if id, err = v.Authenticate(bearer(tok)); err != nil || !id.At.Equal(want) {
		t.Errorf("cache hit: err %v, At %v; want %v", err, id.At, want)
	}
}

// A JWKS endpoint that fails, talks garbage, floods or hangs must leave the
// last good keys in place and never panic.
func TestJWKSBadFetchKeepsLastGoodKeys(t *testing.T) {
	tests := []struct {
		mode string
		body string
	}{
		{"500", ""},
		{"raw", "this is not json"},
		{"raw", `{"keys":"nope"}`},
		{"raw", `{}`},
		{"raw", `{"keys":[]}`},
		{"raw", `{"keys":[{"kty":"RSA","n":"!!!","e":"AQAB","kid":"a"}]}`},
		{"raw", `{"keys":[{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA","kid":"a"}]}`},
		{"raw", `{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"a","alg":"HS256"}]}`},
		{"raw", `{"keys":[{"kty":"RSA","use":"enc","kid":"a"}]}`},
		{"raw", `[` + strings.Repeat(`[`, 100000)},
		{"huge", ""},
		{"hang", ""},
	}
	good := sign(t, jwt.SigningMethodRS256, rsaKey(), claimsAt(t0), "kid", "a")
	for _, tt := range tests {
		t.Run(tt.mode+" "+truncate(tt.body), func(t *testing.T) {
			clock := newClock(t0)
			srv := newJWKSServer(t, jwksJSON(t, jwk{"a", "RS256", &rsaKey().PublicKey}))
			client := &http.Client{Timeout: 200 * time.Millisecond}
			t.Cleanup(client.CloseIdleConnections)
			v := jwksVerifier(t, srv, clock, func(o *Options) { o.HTTPClient = client })

			srv.set(tt.mode, []byte(tt.body))
			before := v.jwks.attempts.Load()
			if !v.jwks.refetch(context.Background()) {
				t.Fatal("refetch was refused")
			}
			if got := v.jwks.attempts.Load(); got != before+1 {
				t.Fatalf("fetch attempts = %d; want %d", got, before+1)
			}
			if _, err := v.Authenticate(bearer(good)); err != nil {
				t.Errorf("Authenticate after a bad fetch = %v; want the previous keys to still work", err)
			}
			if !v.Ready() {
				t.Error("Ready() = false after a bad refresh; want true (keys were loaded once)")
			}
		})
	}
}

func truncate(s string) string {
	if len(s) > 24 {
		return s[:24]
	}
	return s
}

// Startup is never blocked by the JWKS endpoint: New returns at once even if
// it hangs, Ready stays false, and Close still returns.
func TestJWKSStartupDoesNotBlock(t *testing.T) {
	srv := newJWKSServer(t, nil)
	srv.set("hang", nil)
	v, err := New(context.Background(), Options{
		Algorithms: []string{"RS256"},
		Audience:   []string{testAudience},
		JWKSURL:    srv.URL,
		Logger:     quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if v.Ready() {
		t.Error("Ready() = true before any fetch completed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := v.WaitReady(ctx); err == nil {
		t.Error("WaitReady succeeded against a hanging endpoint")
	}
	_, err = v.Authenticate(bearer(sign(t, jwt.SigningMethodRS256, rsaKey(), claimsAt(time.Now()))))
	if got := reasonOf(err); got != ReasonUnknownKey {
		t.Errorf("Authenticate before keys = %q (%v); want %q", got, err, ReasonUnknownKey)
	}
	v.Close() // must not wait for the hanging fetch
}

// An endpoint down at startup is retried (with backoff, not only every
// JWKSRefresh) and the verifier becomes ready when it recovers.
func TestJWKSStartupFailureThenRecovery(t *testing.T) {
	clock := newClock(t0)
	srv := newJWKSServer(t, jwksJSON(t, jwk{"a", "RS256", &rsaKey().PublicKey}))
	srv.set("500", nil)
	o := Options{
		Algorithms:  []string{"RS256"},
		Audience:    []string{testAudience},
		JWKSURL:     srv.URL,
		JWKSRefresh: 20 * time.Millisecond,
		Now:         clock.Now,
		Logger:      quietLogger(),
	}
	v := newVerifier(t, o)
	testrig.Eventually(t, "two failed fetches", func() bool { return srv.hits.Load() >= 2 })
	if v.Ready() {
		t.Fatal("Ready() = true while the endpoint fails")
	}
	srv.set("ok", nil)
	testrig.Eventually(t, "Ready", v.Ready)
	if _, err := v.Authenticate(bearer(sign(t, jwt.SigningMethodRS256, rsaKey(), claimsAt(t0), "kid", "a"))); err != nil {
		t.Errorf("Authenticate after recovery: %v", err)
	}
}

func TestJWKSPeriodicRefresh(t *testing.T) {
	clock := newClock(t0)
	srv := newJWKSServer(t, jwksJSON(t, jwk{"a", "RS256", &rsaKey().PublicKey}))
	jwksVerifier(t, srv, clock, func(o *Options) { o.JWKSRefresh = 10 * time.Millisecond })
	testrig.Eventually(t, "three periodic fetches", func() bool { return srv.hits.Load() >= 3 })
}

// A JWKS verifier also accepts PEM keys, and an HMAC secret for HS tokens.
func TestJWKSWithOtherSources(t *testing.T) {
	clock := newClock(t0)
	srv := newJWKSServer(t, jwksJSON(t, jwk{"a", "RS256", &rsaKey().PublicKey}))
	v := jwksVerifier(t, srv, clock, func(o *Options) {
		o.Algorithms = []string{"RS256", "ES256", "HS256"}
		o.PublicKeyFiles = []string{writePEM(t, &ecKey().PublicKey)}
		o.HMACSecret = testSecret
	})
	for _, tok := range []string{
		sign(t, jwt.SigningMethodRS256, rsaKey(), claimsAt(t0), "kid", "a"),
		sign(t, jwt.SigningMethodES256, ecKey(), claimsAt(t0), "kid", "whatever"),
		sign(t, jwt.SigningMethodHS256, testSecret, claimsAt(t0)),
	} {
		if _, err := v.Authenticate(bearer(tok)); err != nil {
			t.Errorf("Authenticate: %v", err)
		}
	}
}

func TestParseJWKS(t *testing.T) {
	allowed := []string{"RS256", "ES256", "EdDSA"}
	rsaSmall := &mustRSA(1024).PublicKey
	tests := []struct {
		name string
		body []byte
		want int // usable keys; -1: error
	}{
		{"mixed set", jwksJSON(t, jwk{"r", "RS256", &rsaKey().PublicKey}, jwk{"e", "ES256", &ecKey().PublicKey}, jwk{"d", "", edKey().Public()}), 3},
		{"alg not allowed skipped", jwksJSON(t, jwk{"r", "RS512", &rsaKey().PublicKey}, jwk{"e", "", &ecKey().PublicKey}), 1},
		{"alg not fitting the key skipped", jwksJSON(t, jwk{"r", "ES256", &rsaKey().PublicKey}, jwk{"e", "", &ecKey().PublicKey}), 1},
		{"short RSA skipped", jwksJSON(t, jwk{"r", "", rsaSmall}, jwk{"e", "", &ecKey().PublicKey}), 1},
		{"P-384 without ES384 skipped", jwksJSON(t, jwk{"p", "", &ec384Key().PublicKey}, jwk{"e", "", &ecKey().PublicKey}), 1},
		{"only unusable keys", jwksJSON(t, jwk{"r", "", rsaSmall}), -1},
		{"empty", []byte(`{"keys":[]}`), -1},
		{"not json", []byte(`<html>`), -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := parseJWKS(tt.body, allowed, quietLogger())
			got := len(keys)
			if err != nil {
				got = -1
			}
			if got != tt.want {
				t.Errorf("parseJWKS = %d keys (err %v); want %d", got, err, tt.want)
			}
		})
	}
}

// FuzzParseJWKS: whatever a JWKS endpoint sends, parsing returns keys or an
// error and never panics (a panic there would kill the proxy).
func FuzzParseJWKS(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"","y":""}]}`))
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","x5c":["AAAA"]}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		keys, err := parseJWKS(body, []string{"RS256", "PS256", "ES256", "ES384", "EdDSA"}, quietLogger())
		if err == nil && len(keys) == 0 {
			t.Errorf("parseJWKS = no keys, no error")
		}
	})
}
