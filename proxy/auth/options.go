package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults applied by New to zero-valued Options fields.
const (
	DefaultJWKSRefresh         = time.Hour
	DefaultJWKSRefetchCooldown = 5 * time.Minute
	DefaultJWKSTimeout         = 10 * time.Second
	DefaultCustomerClaim       = "stripe_customer_id"
	DefaultUserClaim           = "sub"
	DefaultMaxTokenBytes       = 8192
	DefaultCacheSize           = 10000
	DefaultLinkTTL             = 30 * time.Second

	// MaxJWKSBytes bounds a JWKS response. Real sets are a few KiB; anything
	// larger is a misconfigured or hostile endpoint and is treated as a failed
	// fetch (the last good keys stay in use).
	MaxJWKSBytes = 1 << 20

	// MinHMACSecretBytes is the shortest HMACSecret New accepts: RFC 7518 §3.2
	// requires an HS256 key at least as long as the hash output.
	MinHMACSecretBytes = 32
)

// Options configures a Verifier. Security-relevant fields have no permissive
// default: an empty Algorithms or Audience is an error, not "accept any".
type Options struct {
	// Algorithms is the allowlist of JWS "alg" values. Required; there is no
	// default. Supported: HS256, HS384, HS512, RS256, RS384, RS512, PS256,
	// PS384, PS512, ES256, ES384, EdDSA. "none" is always rejected. A token
	// whose alg is not listed fails with ReasonBadAlgorithm before any key is
	// looked up.
	Algorithms []string

	// Issuer, when non-empty, must equal the token's "iss". Empty disables the
	// check (not recommended when the key source is shared by several
	// issuers).
	Issuer string

	// Audience lists the audiences this service answers to. Required, and no
	// entry may be empty. The token's "aud" (string or array) must contain at
	// least one of them; a token without aud, with aud [] or [""], is
	// rejected.
	Audience []string

	// HMACSecret is key source 1, used for HS* only and only when an HS*
	// algorithm is listed in Algorithms (and then it is required). At least
	// MinHMACSecretBytes long. It is never tried for RS/PS/ES/EdDSA tokens and
	// asymmetric keys are never tried for HS* tokens.
	HMACSecret []byte

	// PublicKeyFiles is key source 2: PEM files holding RSA, ECDSA (P-256,
	// P-384) or Ed25519 public keys ("PUBLIC KEY", "RSA PUBLIC KEY") or
	// certificates ("CERTIFICATE"; only the key is used, validity dates and
	// chains are not checked). Private keys are refused. Each key may verify
	// only the listed algorithms of its type: RSA → RS*/PS*, P-256 → ES256,
	// P-384 → ES384, Ed25519 → EdDSA; a key none of whose algorithms is listed
	// is a configuration error. RSA keys must be 2048–8192 bits. PEM keys have
	// no kid and are tried for any token of a matching algorithm.
	PublicKeyFiles []string

	// JWKSURL is key source 3. The set is fetched in the background at New
	// (see Verifier.Ready), refreshed every JWKSRefresh, and refetched when a
	// token names an unknown kid, at most once per JWKSRefetchCooldown. A
	// fetch that fails, times out, answers non-200, exceeds MaxJWKSBytes or
	// holds no usable key keeps the last good keys. Each JWK is pinned to its
	// "alg" if present, otherwise to its key type as for PublicKeyFiles; keys
	// with "use": "enc" and symmetric ("oct") keys are ignored. Must be https,
	// or http to a loopback host, unless AllowHTTPJWKS.
	JWKSURL string

	// AllowHTTPJWKS permits a plain-http JWKSURL to a non-loopback host.
	// Whoever can tamper with that traffic can mint tokens.
	AllowHTTPJWKS bool

	// JWKSRefresh is the periodic refresh interval. Zero means
	// DefaultJWKSRefresh (1h). After a failed fetch the next attempt comes
	// sooner: 1s (or JWKSRefresh if smaller), doubling up to JWKSRefresh.
	JWKSRefresh time.Duration

	// JWKSRefetchCooldown is the minimum time, on the Now clock, between two
	// refetches triggered by an unknown kid. Zero means
	// DefaultJWKSRefetchCooldown (5m). It bounds how hard a flood of tokens
	// with random kids can hit the JWKS endpoint.
	JWKSRefetchCooldown time.Duration

	// HTTPClient fetches the JWKS. Nil means a private client. Every fetch is
	// bounded by HTTPClient.Timeout, or DefaultJWKSTimeout (10s) when that is
	// zero, so a hanging endpoint cannot stall refreshes.
	HTTPClient *http.Client

	// Leeway is the clock skew tolerated for exp, nbf and iat. Zero means
	// none; a few seconds to a minute is typical.
	Leeway time.Duration

	// CustomerClaim names the claim carrying the Stripe customer id. Zero
	// means DefaultCustomerClaim ("stripe_customer_id"). An absent, null or
	// empty claim means "no customer in the token" (Links is asked); any other
	// value must be a string "cus_" followed by letters, digits or "_" (at
	// most 255 bytes), otherwise the token is rejected with ReasonBadClaims
	// rather than silently falling back to Links: a malformed claim is an
	// issuer misconfiguration that should be loud.
	CustomerClaim string

	// UserClaim names the claim identifying the user. Zero means "sub". It is
	// required in every token and must be a string of 1–256 bytes without
	// control characters or surrounding spaces, since it is forwarded as the
	// X-Tollgate-User header.
	UserClaim string

	// Cookie, if set, names a cookie that may carry the token instead of the
	// Authorization header. A request carrying both, or the cookie twice, is
	// rejected (ReasonMultipleCredentials). An empty cookie counts as absent.
	Cookie string

	// MaxTokenBytes bounds the token length, checked before any decoding.
	// Zero means DefaultMaxTokenBytes (8192).
	MaxTokenBytes int

	// CacheSize bounds the verified-token cache (and the user-link cache).
	// Zero means DefaultCacheSize (10000). Entries never outlive the token's
	// exp; exp, nbf and iat are re-checked against Now on every hit.
	CacheSize int

	// LinkTTL is how long a Links answer is reused. Zero means
	// DefaultLinkTTL (30s). A "no link" answer is reused for at most 1s so a
	// customer who just checked out is recognised quickly. If Links fails, an
	// answer up to 10×LinkTTL old is used instead of failing.
	LinkTTL time.Duration

	// Now is the clock for token validation, cache expiry, link TTLs and the
	// refetch cooldown. Nil means time.Now.
	Now func() time.Time

	// Links resolves user → customer when the token has no customer claim.
	// Nil means tokens without a customer claim yield Identity.Customer "".
	Links UserLinks

	// Validations, if non-nil, counts every Authenticate call by its result;
	// it must have exactly one label, "result" (see the Reason constants).
	Validations *prometheus.CounterVec

	// JWKSFetches, if non-nil, counts JWKS fetches by result ("ok",
	// "failed"); both exist at 0 from start. JWKSLastSuccess, if non-nil, is
	// set to the Unix time of each successful fetch (0 until the first).
	// Used only with JWKSURL.
	JWKSFetches     *prometheus.CounterVec
	JWKSLastSuccess prometheus.Gauge

	// Logger receives JWKS fetch problems (warn) and rejected tokens (debug,
	// with the cause but never the token). Nil means slog.Default().
	Logger *slog.Logger
}

// UserLinks is the user→customer link recorded when a user's checkout
// completed. The entitlement store implements it.
type UserLinks interface {
	CustomerForUser(ctx context.Context, userID string) (customerID string, ok bool, err error)
}

// supportedAlgs maps every algorithm this package accepts to its family.
var supportedAlgs = map[string]string{
	"HS256": "HS", "HS384": "HS", "HS512": "HS",
	"RS256": "RSA", "RS384": "RSA", "RS512": "RSA",
	"PS256": "RSA", "PS384": "RSA", "PS512": "RSA",
	"ES256": "ES", "ES384": "ES",
	"EdDSA": "EdDSA",
}

// withDefaults returns o with zero fields replaced by their defaults.
func (o Options) withDefaults() Options {
	if o.JWKSRefresh == 0 {
		o.JWKSRefresh = DefaultJWKSRefresh
	}
	if o.JWKSRefetchCooldown == 0 {
		o.JWKSRefetchCooldown = DefaultJWKSRefetchCooldown
	}
	if o.CustomerClaim == "" {
		o.CustomerClaim = DefaultCustomerClaim
	}
	if o.UserClaim == "" {
		o.UserClaim = DefaultUserClaim
	}
	if o.MaxTokenBytes == 0 {
		o.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.LinkTTL == 0 {
		o.LinkTTL = DefaultLinkTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// validate reports every problem in o (already defaulted) at once. It checks
// the shape of the options; PEM files are read later by loadPublicKeyFiles.
func (o *Options) validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &OptionError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}

	if len(o.Algorithms) == 0 {
		bad("Algorithms", "required: list the allowed JWS algorithms (there is no default)")
	}
	families := map[string]bool{}
	for i, a := range o.Algorithms {
		fam, ok := supportedAlgs[a]
		switch {
		case strings.EqualFold(a, "none"):
			bad(fmt.Sprintf("Algorithms[%d]", i), `"none" is never allowed: unsigned tokens prove nothing`)
		case !ok:
			bad(fmt.Sprintf("Algorithms[%d]", i), "unsupported algorithm %q", a)
		default:
			families[fam] = true
		}
	}

	if len(o.Audience) == 0 {
		bad("Audience", "required: list the audiences this service accepts")
	}
	for i, a := range o.Audience {
		if strings.TrimSpace(a) == "" {
			bad(fmt.Sprintf("Audience[%d]", i), "must not be empty")
		}
	}

	asym := families["RSA"] || families["ES"] || families["EdDSA"]
	if len(o.HMACSecret) == 0 && len(o.PublicKeyFiles) == 0 && o.JWKSURL == "" {
		bad("HMACSecret", "no key source: set HMACSecret, PublicKeyFiles or JWKSURL")
	}
	switch {
	case families["HS"] && len(o.HMACSecret) == 0:
		bad("HMACSecret", "required when an HS* algorithm is allowed")
	case len(o.HMACSecret) > 0 && !families["HS"]:
		bad("HMACSecret", "set but no HS* algorithm is allowed")
	case len(o.HMACSecret) > 0 && len(o.HMACSecret) < MinHMACSecretBytes:
		bad("HMACSecret", "%d bytes; at least %d required (RFC 7518 §3.2)", len(o.HMACSecret), MinHMACSecretBytes)
	}
	if asym && len(o.PublicKeyFiles) == 0 && o.JWKSURL == "" {
		bad("Algorithms", "asymmetric algorithms allowed but neither PublicKeyFiles nor JWKSURL is set")
	}
	if !asym && (len(o.PublicKeyFiles) > 0 || o.JWKSURL != "") && len(o.Algorithms) > 0 {
		bad("Algorithms", "public keys configured but no RS*/PS*/ES*/EdDSA algorithm is allowed")
	}
	if o.JWKSURL != "" {
		if err := checkJWKSURL(o.JWKSURL, o.AllowHTTPJWKS); err != nil {
			bad("JWKSURL", "%v", err)
		}
	}

	for _, d := range []struct {
		field string
		v     time.Duration
	}{
		{"JWKSRefresh", o.JWKSRefresh},
		{"JWKSRefetchCooldown", o.JWKSRefetchCooldown},
		{"Leeway", o.Leeway},
		{"LinkTTL", o.LinkTTL},
	} {
		if d.v < 0 {
			bad(d.field, "must not be negative, got %v", d.v)
		}
	}
	if o.MaxTokenBytes < 0 {
		bad("MaxTokenBytes", "must not be negative")
	}
	if o.CacheSize < 0 {
		bad("CacheSize", "must not be negative")
	}
	if o.HTTPClient != nil && o.HTTPClient.Timeout < 0 {
		bad("HTTPClient.Timeout", "must not be negative")
	}
	if o.Validations != nil {
		if _, err := o.Validations.GetMetricWithLabelValues(ReasonOK); err != nil {
			bad("Validations", `must have exactly one label, "result": %v`, err)
		}
	}
	if o.JWKSFetches != nil {
		if _, err := o.JWKSFetches.GetMetricWithLabelValues(jwksFetchOK); err != nil {
			bad("JWKSFetches", `must have exactly one label, "result": %v`, err)
		}
	}
	return errors.Join(errs...)
}

// checkJWKSURL refuses URLs over which key material could be tampered with.
func checkJWKSURL(raw string, allowHTTP bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	switch {
	case u.Scheme == "":
		return fmt.Errorf("%q is not an absolute URL", raw)
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("%q: scheme must be https", raw)
	case u.Host == "":
		return fmt.Errorf("%q has no host", raw)
	}
	if u.Scheme == "http" && !allowHTTP && !isLoopback(u.Hostname()) {
		return fmt.Errorf("%q: plain http to a non-loopback host lets anyone on the path mint tokens; use https (or set AllowHTTPJWKS)", raw)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// allowed reports whether alg is in the allowlist.
func (o *Options) allowed(alg string) bool { return slices.Contains(o.Algorithms, alg) }
