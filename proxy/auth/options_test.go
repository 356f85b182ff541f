package auth

import (
	"context"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// TestOptionsRejected checks that every unsafe or inconsistent option is an
// error naming its field: security settings have no permissive default.
func TestOptionsRejected(t *testing.T) {
	clock := newClock(t0)
	valid := func() Options { return hmacOptions(clock) }
	rsaPriv := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey())})

	tests := []struct {
		name      string
		mutate    func(*Options)
		wantField string
		wantText  string
	}{
		{"no algorithms", func(o *Options) { o.Algorithms = nil }, "Algorithms", "required"},
		{"alg none", func(o *Options) { o.Algorithms = []string{"HS256", "none"} }, "Algorithms[1]", "never allowed"},
		{"unknown alg", func(o *Options) { o.Algorithms = []string{"HS256", "ES512"} }, "Algorithms[1]", "unsupported"},
		{"no audience", func(o *Options) { o.Audience = nil }, "Audience", "required"},
		{"empty audience entry", func(o *Options) { o.Audience = []string{"api", ""} }, "Audience[1]", "empty"},
		{"no key source", func(o *Options) { o.HMACSecret = nil; o.Algorithms = []string{"RS256"} }, "HMACSecret", "no key source"},
		{"HS without secret", func(o *Options) {
			o.HMACSecret = nil
			o.JWKSURL = "https://idp.test/jwks"
			o.Algorithms = []string{"HS256", "RS256"}
		}, "HMACSecret", "required when"},
		{"secret without HS", func(o *Options) { o.Algorithms = []string{"RS256"}; o.JWKSURL = "https://idp.test/jwks" }, "HMACSecret", "no HS* algorithm"},
		{"short secret", func(o *Options) { o.HMACSecret = []byte("secret") }, "HMACSecret", "at least 32"},
		{"RS without public keys", func(o *Options) { o.Algorithms = []string{"HS256", "RS256"} }, "Algorithms", "neither PublicKeyFiles nor JWKSURL"},
		{"public keys without asymmetric alg", func(o *Options) { o.JWKSURL = "https://idp.test/jwks" }, "Algorithms", "no RS*/PS*/ES*/EdDSA"},
		{"JWKS over plain http", func(o *Options) { o.Algorithms = []string{"HS256", "RS256"}; o.JWKSURL = "http://idp.test/jwks" }, "JWKSURL", "plain http"},
		{"JWKS odd scheme", func(o *Options) { o.Algorithms = []string{"HS256", "RS256"}; o.JWKSURL = "file:///etc/jwks" }, "JWKSURL", "https"},
		{"JWKS relative", func(o *Options) { o.Algorithms = []string{"HS256", "RS256"}; o.JWKSURL = "/jwks" }, "JWKSURL", "absolute"},
		{"negative leeway", func(o *Options) { o.Leeway = -time.Second }, "Leeway", "negative"},
		{"negative refresh", func(o *Options) { o.JWKSRefresh = -time.Second }, "JWKSRefresh", "negative"},
		{"negative cache", func(o *Options) { o.CacheSize = -1 }, "CacheSize", "negative"},
		{"negative max token", func(o *Options) { o.MaxTokenBytes = -1 }, "MaxTokenBytes", "negative"},
		{"metric with wrong labels", func(o *Options) {
			o.Validations = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x"}, []string{"route", "result"})
		}, "Validations", `"result"`},
		{"PEM file missing", func(o *Options) {
			o.Algorithms = []string{"HS256", "RS256"}
			o.PublicKeyFiles = []string{"/nonexistent.pem"}
		}, "PublicKeyFiles[0]", "no such file"},
		{"PEM holds a private key", func(o *Options) {
			o.Algorithms = []string{"HS256", "RS256"}
			o.PublicKeyFiles = []string{writeFile(t, "priv.pem", rsaPriv)}
		}, "PublicKeyFiles[0]", "private key"},
		{"PEM not PEM", func(o *Options) {
			o.Algorithms = []string{"HS256", "RS256"}
			o.PublicKeyFiles = []string{writeFile(t, "junk.pem", []byte("hello"))}
		}, "PublicKeyFiles[0]", "no PEM public key"},
		{"RSA key too short", func(o *Options) {
			o.Algorithms = []string{"HS256", "RS256"}
			o.PublicKeyFiles = []string{writePEM(t, &mustRSA(1024).PublicKey)}
		}, "PublicKeyFiles[0]", "1024 bits"},
		{"P-521 key", func(o *Options) {
			o.Algorithms = []string{"HS256", "ES256"}
			o.PublicKeyFiles = []string{writePEM(t, &mustEC(elliptic.P521()).PublicKey)}
		}, "PublicKeyFiles[0]", "P-521"},
		// Pinning: an RSA key is useless (and suspicious) when only ES256 is
		// allowed.
		{"RSA key but only ES256 allowed", func(o *Options) {
			o.Algorithms = []string{"HS256", "ES256"}
			o.PublicKeyFiles = []string{writePEM(t, &ecKey().PublicKey), writePEM(t, &rsaKey().PublicKey)}
		}, "PublicKeyFiles[1]", "none of which is in Algorithms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := valid()
			tt.mutate(&o)
			v, err := New(context.Background(), o)
			if err == nil {
				v.Close()
				t.Fatalf("New succeeded; want error on %s", tt.wantField)
			}
			if !hasOptionError(err, tt.wantField, tt.wantText) {
				t.Errorf("New error = %v; want an *OptionError on %s containing %q", err, tt.wantField, tt.wantText)
			}
		})
	}
}

// hasOptionError reports whether err (joined, possibly nested) holds an
// *OptionError on field whose problem contains text.
func hasOptionError(err error, field, text string) bool {
	switch e := err.(type) {
	case *OptionError:
		return e.Field == field && strings.Contains(e.Problem, text)
	case interface{ Unwrap() []error }:
		return slices.ContainsFunc(e.Unwrap(), func(e error) bool { return hasOptionError(e, field, text) })
	case interface{ Unwrap() error }:
		return hasOptionError(e.Unwrap(), field, text)
	}
	return false
}

func TestOptionsReportAllProblems(t *testing.T) {
	_, err := New(context.Background(), Options{Audience: []string{""}})
	for _, field := range []string{"Algorithms", "Audience[0]", "HMACSecret"} {
		if !hasOptionError(err, field, "") {
			t.Errorf("New error = %v; want a problem on %s", err, field)
		}
	}
}

func TestOptionsAccepted(t *testing.T) {
	cert := selfSignedCert(t)
	clock := newClock(t0)
	tests := []struct {
		name   string
		mutate func(*Options)
	}{
		{"HMAC", func(*Options) {}},
		{"PEM PKIX, PKCS1 and certificate", func(o *Options) {
			o.Algorithms = []string{"HS256", "RS256", "ES256"}
			pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaKey2().PublicKey)})
			o.PublicKeyFiles = []string{writePEM(t, &rsaKey().PublicKey), writeFile(t, "pkcs1.pem", pkcs1), writeFile(t, "cert.pem", cert)}
		}},
		{"JWKS on loopback http", func(o *Options) {
			o.Algorithms = []string{"HS256", "RS256"}
			o.JWKSURL = "http://127.0.0.1:1/jwks"
		}},
		{"JWKS on http with opt-in", func(o *Options) {
			o.Algorithms = []string{"HS256", "RS256"}
			o.JWKSURL = "http://192.0.2.1/jwks" // TEST-NET-1: never answers
			o.AllowHTTPJWKS = true
			o.HTTPClient = &http.Client{Timeout: time.Millisecond}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := hmacOptions(clock)
			tt.mutate(&o)
			v, err := New(context.Background(), o)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			v.Close()
		})
	}
}

// TestPEMCertificateKeyVerifies checks a key taken from a certificate.
func TestPEMCertificateKeyVerifies(t *testing.T) {
	clock := newClock(t0)
	o := baseOptions(t, clock)
	o.PublicKeyFiles = []string{writeFile(t, "cert.pem", selfSignedCert(t))}
	o.Algorithms = []string{"ES256"}
	v := newVerifier(t, o)
	if _, err := v.Authenticate(bearer(sign(t, jwt.SigningMethodES256, ecKey(), claimsAt(t0)))); err != nil {
		t.Errorf("Authenticate: %v", err)
	}
}

// Options are copied: changing the caller's slices after New changes nothing.
func TestOptionsCopied(t *testing.T) {
	clock := newClock(t0)
	o := hmacOptions(clock)
	o.HMACSecret = slices.Clone(testSecret)
	v := newVerifier(t, o)
	o.Audience[0] = "other"
	o.HMACSecret[0] ^= 0xff
	if _, err := v.Authenticate(bearer(sign(t, jwt.SigningMethodHS256, testSecret, claimsAt(t0)))); err != nil {
		t.Errorf("Authenticate after caller mutated Options: %v", err)
	}
}

// selfSignedCert is a PEM certificate for ecKey.
func selfSignedCert(t *testing.T) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "issuer.test"},
		NotBefore:    t0.Add(-time.Hour),
		NotAfter:     t0.Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ecKey().PublicKey, ecKey())
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
