package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

// RSA modulus bounds for public keys. Below 2048 bits is forgeable in
// practice; far above 8192 makes each verification a CPU denial of service.
const (
	minRSABits = 2048
	maxRSABits = 8192
)

// Key lookup failures, classified into Reasons by classify.
var (
	errUnknownKey  = errors.New("no key for this token")
	errKeyNotValid = errors.New("key is not allowed to verify this algorithm")
	errBadKID      = errors.New(`"kid" header is not a string`)
)

// pinnedKey is a public key together with the only algorithms it may verify.
// Pinning is what stops key confusion: the token's alg header selects among
// algs, never the other way round.
type pinnedKey struct {
	kid  string // "" for PEM keys and JWKs without kid
	algs []string
	key  any // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// keySet is an immutable snapshot of asymmetric keys; JWKS refreshes swap in a
// new one atomically.
type keySet struct {
	byKID map[string][]pinnedKey // keys with a kid
	noKID []pinnedKey            // PEM keys and JWKs without kid: tried for any kid
}

func newKeySet(keys []pinnedKey) *keySet {
	ks := &keySet{byKID: map[string][]pinnedKey{}}
	for _, k := range keys {
		if k.kid == "" {
			ks.noKID = append(ks.noKID, k)
		} else {
			ks.byKID[k.kid] = append(ks.byKID[k.kid], k)
		}
	}
	return ks
}

func (ks *keySet) len() int {
	if ks == nil {
		return 0
	}
	n := len(ks.noKID)
	for _, k := range ks.byKID {
		n += len(k)
	}
	return n
}

// hasKID reports whether a key with exactly this kid exists.
func (ks *keySet) hasKID(kid string) bool {
	return ks != nil && len(ks.byKID[kid]) > 0
}

// appendCandidates appends the keys that may verify a token with this alg
// and kid (hasKID false: the token has no kid, so every key is a candidate).
// Keys without a kid (PEM files, kid-less JWKs) are candidates for any kid.
// pinnedElsewhere reports that a key with exactly this kid exists but is
// pinned to other algorithms: the token tries to use a key with an algorithm
// it was not published for.
func (ks *keySet) appendCandidates(dst []any, alg, kid string, hasKID bool) (out []any, pinnedElsewhere bool) {
	if ks == nil {
		return dst, false
	}
	for _, k := range ks.noKID {
		if slices.Contains(k.algs, alg) {
			dst = append(dst, k.key)
		}
	}
	if hasKID {
		for _, k := range ks.byKID[kid] {
			if slices.Contains(k.algs, alg) {
				dst = append(dst, k.key)
			} else {
				pinnedElsewhere = true
			}
		}
		return dst, pinnedElsewhere
	}
	for _, keys := range ks.byKID {
		for _, k := range keys {
			if slices.Contains(k.algs, alg) {
				dst = append(dst, k.key)
			}
		}
	}
	return dst, false
}

// pinAlgorithms returns the allowed algorithms key may verify. jwkAlg, the
// JWK "alg" parameter, narrows the choice to one algorithm when set.
func pinAlgorithms(key any, jwkAlg string, allowed []string) ([]string, error) {
	var family []string
	switch k := key.(type) {
	case *rsa.PublicKey:
		bits := k.N.BitLen()
		if bits < minRSABits || bits > maxRSABits {
			return nil, fmt.Errorf("RSA key of %d bits; want %d to %d", bits, minRSABits, maxRSABits)
		}
		family = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	case *ecdsa.PublicKey:
		// ECDSA keys are pinned by curve: RFC 7518 §3.4 ties ES256 to P-256
		// and ES384 to P-384.
		switch k.Curve {
		case elliptic.P256():
			family = []string{"ES256"}
		case elliptic.P384():
			family = []string{"ES384"}
		default:
			return nil, fmt.Errorf("ECDSA curve %s is not supported (P-256, P-384)", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
		family = []string{"EdDSA"}
	default:
		return nil, fmt.Errorf("unsupported key type %T", key)
	}
	if jwkAlg != "" {
		if !slices.Contains(family, jwkAlg) {
			return nil, fmt.Errorf("alg %q does not fit a %s key", jwkAlg, keyKind(key))
		}
		family = []string{jwkAlg}
	}
	var algs []string
	for _, a := range family {
		if slices.Contains(allowed, a) {
			algs = append(algs, a)
		}
	}
	if len(algs) == 0 {
		return nil, fmt.Errorf("%s key may only verify %s, none of which is in Algorithms", keyKind(key), strings.Join(family, "/"))
	}
	return algs, nil
}

func keyKind(key any) string {
	switch key.(type) {
	case *rsa.PublicKey:
		return "RSA"
	case *ecdsa.PublicKey:
		return "ECDSA"
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", key)
}

// loadPublicKeyFiles reads and pins every key in files; problems are
// OptionErrors naming the file's index.
func loadPublicKeyFiles(files []string, allowed []string) ([]pinnedKey, error) {
	var keys []pinnedKey
	var errs []error
	for i, f := range files {
		field := fmt.Sprintf("PublicKeyFiles[%d]", i)
		pubs, err := readPEMPublicKeys(f)
		if err != nil {
			errs = append(errs, &OptionError{Field: field, Problem: err.Error()})
			continue
		}
		for j, pub := range pubs {
			algs, err := pinAlgorithms(pub, "", allowed)
			if err != nil {
				errs = append(errs, &OptionError{Field: field, Problem: fmt.Sprintf("%s: key %d: %v", f, j, err)})
				continue
			}
			keys = append(keys, pinnedKey{algs: algs, key: pub})
		}
	}
	return keys, errors.Join(errs...)
}

// readPEMPublicKeys returns every public key in a PEM file. Private keys are
// refused: the proxy only verifies, and a signing key has no business on it.
func readPEMPublicKeys(path string) ([]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var keys []any
	for n := 0; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		var pub any
		switch block.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				pub = cert.PublicKey
			}
		default:
			if strings.Contains(block.Type, "PRIVATE KEY") {
				return nil, fmt.Errorf("%s: block %d is a private key; give the public key only", path, n)
			}
			return nil, fmt.Errorf("%s: block %d: unsupported PEM type %q", path, n, block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: block %d: %w", path, n, err)
		}
		keys = append(keys, pub)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no PEM public key found", path)
	}
	return keys, nil
}
