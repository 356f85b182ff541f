package main

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// runIssuer plays the identity provider: a fresh RSA key published as a
// JWKS at /jwks.json, and one RS256 token signed with it written to
// -token-out. The token has no customer claim, so tollgate resolves the
// customer through the user's link, as for most real apps.
func runIssuer(args []string, _ io.Writer) error {
	fs := newFlags("issuer")
	listen := fs.String("listen", "127.0.0.1:0", "loopback address to listen on")
	out := fs.String("token-out", "", "file to write the signed token to")
	iss := fs.String("iss", "https://issuer.bench.invalid/", "the token's iss")
	aud := fs.String("aud", "api", "the token's aud")
	sub := fs.String("sub", "user_bench", "the token's sub (the user)")
	ttl := fs.Duration("ttl", 24*time.Hour, "the token's lifetime")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("-token-out FILE is required")
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	now := time.Now()
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": *iss, "aud": *aud, "sub": *sub, "iat": now.Unix(), "exp": now.Add(*ttl).Unix()})
	t.Header["kid"] = "bench1"
	tok, err := t.SignedString(key)
	if err != nil {
		return err
	}
	ln, err := listenLoopback(*listen)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, []byte(tok), 0o600); err != nil {
		return err
	}
	b64 := base64.RawURLEncoding.EncodeToString
	jwks := fmt.Appendf(nil, `{"keys":[{"kty":"RSA","kid":"bench1","alg":"RS256","use":"sig","n":%q,"e":%q}]}`,
		b64(key.N.Bytes()), b64(big.NewInt(int64(key.E)).Bytes()))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	})
	return serve(ln, mux)
}
