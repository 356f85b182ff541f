package auth

import (
	"errors"

	"github.com/golang-jwt/jwt/v5"
)

// SignHS256 returns claims signed with HS256 under secret. It exists for the
// demo and tests (a real deployment's tokens come from its identity
// provider); it refuses secrets New would refuse.
func SignHS256(secret []byte, claims jwt.MapClaims) (string, error) {
	if len(secret) < MinHMACSecretBytes {
		return "", errors.New("auth: SignHS256: secret shorter than MinHMACSecretBytes")
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
}
