package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// t0 is the fixed "now" of most tests.
var t0 = time.Unix(1_800_000_000, 0)

const (
	testIssuer   = "https://issuer.test"
	testAudience = "api"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef-test-secret")

// testClock is the injected clock: tests move time, nothing sleeps.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *testClock { return &testClock{t: t} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *testClock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// Test keys are generated once per test binary; RSA generation is slow.
var (
	rsaKey      = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	rsaKey2     = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	attackerRSA = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	ecKey       = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC(elliptic.P256()) })
	ec384Key    = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC(elliptic.P384()) })
	edKey       = sync.OnceValue(func() ed25519.PrivateKey {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	})
)

func mustRSA(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

func mustEC(c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// pemBytes is the PKIX PEM encoding of a public key, exactly what an
// operator puts in PublicKeyFiles (and what a key-confusion attacker HMACs
// with).
func pemBytes(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func writePEM(t testing.TB, pub any) string {
	return writeFile(t, "key.pem", pemBytes(t, pub))
}

// claimsAt returns valid claims for a token issued at now, expiring in 1h.
func claimsAt(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"iss":                testIssuer,
		"aud":                testAudience,
		"sub":                "user_1",
		"iat":                now.Unix(),
		"exp":                now.Add(time.Hour).Unix(),
		"stripe_customer_id": "cus_123",
	}
}

// with returns a copy of c with kv applied; a nil value deletes the claim.
func with(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	out := maps.Clone(c)
	for i := 0; i < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == nil {
			delete(out, k)
		} else {
			out[k] = kv[i+1]
		}
	}
	return out
}

// sign signs claims with method and key, adding header fields.
func sign(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims, header ...any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for i := 0; i < len(header); i += 2 {
		tok.Header[header[i].(string)] = header[i+1]
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rawToken assembles a token from raw JSON header and claims and a raw
// signature, for tokens no library would sign.
func rawToken(header string, claims jwt.MapClaims, sig []byte) string {
	enc := base64.RawURLEncoding
	body, err := json.Marshal(claims)
	if err != nil {
		panic(err)
	}
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString(body) + "." + enc.EncodeToString(sig)
}

// bearer builds a request with Authorization: Bearer tok.
func bearer(tok string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://tollgate.test/x", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}

// reasonOf returns the Reason of an Authenticate error, or "ok".
func reasonOf(err error) string {
	if err == nil {
		return ReasonOK
	}
	var e *Error
	if !errors.As(err, &e) {
		return "not *Error: " + err.Error()
	}
	return e.Reason
}

// baseOptions is a verifier for RSA/ECDSA/Ed25519 PEM keys on clock.
func baseOptions(t testing.TB, clock *testClock) Options {
	return Options{
		Algorithms: []string{"RS256", "PS256", "ES256", "EdDSA"},
		Issuer:     testIssuer,
		Audience:   []string{testAudience},
		PublicKeyFiles: []string{
			writePEM(t, &rsaKey().PublicKey),
			writePEM(t, &ecKey().PublicKey),
			writePEM(t, edKey().Public()),
		},
		Now:    clock.Now,
		Logger: quietLogger(),
	}
}

func hmacOptions(clock *testClock) Options {
	return Options{
		Algorithms: []string{"HS256"},
		Issuer:     testIssuer,
		Audience:   []string{testAudience},
		HMACSecret: testSecret,
		Now:        clock.Now,
		Logger:     quietLogger(),
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newVerifier(t testing.TB, o Options) *Verifier {
	t.Helper()
	v, err := New(context.Background(), o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}
