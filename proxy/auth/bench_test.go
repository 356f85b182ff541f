package auth

import (
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkVerify measures a full, uncached Authenticate per algorithm:
// extraction, parsing, signature and claim checks.
func BenchmarkVerify(b *testing.B) {
	clock := newClock(t0)
	tests := []struct {
		alg    string
		method jwt.SigningMethod
		key    any
	}{
		{"HS256", jwt.SigningMethodHS256, testSecret},
		{"RS256", jwt.SigningMethodRS256, rsaKey()},
		{"PS256", jwt.SigningMethodPS256, rsaKey()},
		{"ES256", jwt.SigningMethodES256, ecKey()},
		{"EdDSA", jwt.SigningMethodEdDSA, edKey()},
	}
	for _, tt := range tests {
		b.Run(tt.alg, func(b *testing.B) {
			o := baseOptions(b, clock)
			if tt.alg == "HS256" {
				o = hmacOptions(clock)
			}
			v := newVerifier(b, o)
			v.tokens = nil // every iteration pays the full verification
			r := bearer(sign(b, tt.method, tt.key, claimsAt(t0)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Authenticate(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifyCached measures the cache-hit path for an RS256 token: the
// cost every request after the first pays.
func BenchmarkVerifyCached(b *testing.B) {
	clock := newClock(t0)
	v := newVerifier(b, baseOptions(b, clock))
	r := bearer(sign(b, jwt.SigningMethodRS256, rsaKey(), claimsAt(t0)))
	if _, err := v.Authenticate(r); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Authenticate(r); err != nil {
			b.Fatal(err)
		}
	}
	if n := v.verifications.Load(); n != 1 {
		b.Fatalf("verifications = %d; want 1", n)
	}
}
