package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// Identity is the verified caller of a request.
type Identity struct {
	User      string    // the UserClaim, always non-empty
	Customer  string    // Stripe customer id ("cus_…"), or "" when none is known
	ExpiresAt time.Time // the token's exp
	// Claims are all claims of the token. The map is shared with the token
	// cache: read it, never modify it.
	Claims jwt.MapClaims
	// Memo is the memo of what named Customer (see Memo); nil when
	// Customer is "".
	Memo *Memo
	// At is a reading of the verifier's clock (Options.Now) taken when the
	// identity was complete: on a cache hit whose link is remembered, the
	// one its time claims were checked against; after a verification or a
	// link read (which may wait for the JWKS or Redis), a reading taken
	// after them. The steps after authentication take it as the request's
	// time instead of reading a clock again (issue 13). Zero in an Identity
	// that Authenticate did not make.
	At time.Time
}

// Verifier authenticates requests. It is safe for concurrent use. Close it
// to stop the JWKS refresh goroutine.
type Verifier struct {
	o       Options
	parser  *jwt.Parser
	hmac    []byte
	static  *keySet     // PEM keys; nil without PublicKeyFiles
	jwks    *jwksSource // nil without JWKSURL
	tokens  *tokenCache // nil disables caching (benchmarks)
	links   *linkCache
	results map[string]prometheus.Counter
	okCount prometheus.Counter // results[ReasonOK], without the map lookup
	log     *slog.Logger

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	ownClient bool

	verifications atomic.Int64 // full (uncached) verifications, for tests
}

// New validates o, loads PEM keys, and for a JWKSURL starts fetching the key
// set in the background: New never waits for the network, so Ready is false
// until the first fetch succeeds. Every problem in o is reported at once as
// joined *OptionError values. ctx bounds the background refresh (as does
// Close).
func New(ctx context.Context, o Options) (*Verifier, error) {
	o = o.withDefaults()
	// Copy the slices so a caller mutating its config cannot change policy
	// under a running verifier.
	o.Algorithms = slices.Clone(o.Algorithms)
	o.Audience = slices.Clone(o.Audience)
	o.HMACSecret = slices.Clone(o.HMACSecret)

	err := o.validate()
	var static []pinnedKey
	if len(o.PublicKeyFiles) > 0 {
		var perr error
		static, perr = loadPublicKeyFiles(o.PublicKeyFiles, o.Algorithms)
		err = errors.Join(err, perr)
	}
	if err != nil {
		return nil, err
	}

	v := &Verifier{
		o:      o,
		parser: newParser(&o),
		hmac:   o.HMACSecret,
		tokens: newTokenCache(o.CacheSize, o.Leeway),
		links:  newLinkCache(o.CacheSize, o.LinkTTL),
		log:    o.Logger,
	}
	if len(static) > 0 {
		v.static = newKeySet(static)
	}
	if o.Validations != nil {
		v.results = make(map[string]prometheus.Counter, len(allReasons))
		for _, r := range allReasons {
			// Resolved once (validate proved the labels fit) so the request
			// path does no label hashing, and every series exists from 0.
			v.results[r] = o.Validations.WithLabelValues(r)
		}
		v.okCount = v.results[ReasonOK]
	}
	ctx, v.cancel = context.WithCancel(ctx)
	if o.JWKSURL != "" {
		v.jwks = newJWKSSource(&o)
		if v.tokens != nil {
			v.jwks.onReplace = v.tokens.clear
		}
		v.ownClient = o.HTTPClient == nil
		v.wg.Go(func() { v.jwks.run(ctx) })
	}
	return v, nil
}

// newParser builds the golang-jwt parser that enforces the claim policy.
func newParser(o *Options) *jwt.Parser {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(o.Algorithms),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(o.Leeway),
		jwt.WithAudience(o.Audience...),
		jwt.WithTimeFunc(o.Now),
		// One encoding per token: no padding, no non-zero trailing bits.
		jwt.WithStrictDecoding(),
	}
	if o.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(o.Issuer))
	}
	return jwt.NewParser(opts...)
}

// Ready reports whether keys are loaded: always for HMACSecret and
// PublicKeyFiles, after the first successful fetch for JWKSURL. Tokens
// signed with other key sources verify meanwhile.
func (v *Verifier) Ready() bool {
	if v.jwks == nil {
		return true
	}
	select {
	case <-v.jwks.ready:
		return true
	default:
		return false
	}
}

// WaitReady blocks until Ready or until ctx ends.
func (v *Verifier) WaitReady(ctx context.Context) error {
	if v.jwks == nil {
		return nil
	}
	select {
	case <-v.jwks.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("auth: JWKS not loaded: %w", context.Cause(ctx))
	}
}

// Close stops the background JWKS refresh and waits for it. It is safe to
// call more than once.
func (v *Verifier) Close() {
	v.closeOnce.Do(func() {
		v.cancel()
		v.wg.Wait()
		if v.ownClient {
			v.jwks.client.CloseIdleConnections()
		}
	})
}

// InvalidateUser drops the cached user→customer link of userID, so the next
// request asks Links again. tollgate itself relies on the 1s reuse limit of
// a "no link" answer instead (a checkout is linked on whichever replica
// took the webhook); embedders that link users in-process can call it.
func (v *Verifier) InvalidateUser(userID string) { v.links.forget(userID) }

// Authenticate returns the identity of the request's caller. The error is
// always an *Error: errors.Is(err, ErrNoCredentials) when no token is
// present; errors.Is(err, ErrLinkUnavailable) (answer 503) when the token is
// valid but its customer could not be resolved — Identity then still
// carries User; any other error is a present-but-invalid token (answer 401).
func (v *Verifier) Authenticate(r *http.Request) (Identity, error) {
	id, e := v.authenticate(r)
	if e == nil {
		if v.okCount != nil {
			v.okCount.Inc()
		}
		return id, nil
	}
	if e.Reason != ReasonMissing && v.log.Enabled(r.Context(), slog.LevelDebug) {
		v.log.LogAttrs(r.Context(), slog.LevelDebug, "auth: token rejected",
			slog.String("reason", e.Reason), slog.String("error", e.Err.Error()))
	}
	if c := v.results[e.Reason]; c != nil {
		c.Inc()
	}
	return id, e
}

func (v *Verifier) authenticate(r *http.Request) (Identity, *Error) {
	tok, e := extractCandidate(r, v.o.Cookie, v.o.MaxTokenBytes)
	if e != nil {
		return Identity{}, e
	}
	now := v.o.Now()
	ver, l, hit, e := v.verifyCached(r.Context(), tok, now)
	if e != nil {
		return Identity{}, e
	}
	id := Identity{User: ver.user, ExpiresAt: ver.exp, Claims: ver.claims, At: now}
	if hit && l != nil {
		// A cache hit with its link current: the token's customer claim,
		// or its last request's link; nothing waited since now.
		l.identify(&id)
		return id, nil
	}
	if l == nil && v.o.Links != nil {
		if l, e = v.linkedCustomer(r.Context(), ver, now); e != nil {
			return id, e
		}
	}
	if l != nil {
		l.identify(&id)
	}
	id.At = v.o.Now() // after a verification or a link read, which may have waited for the JWKS or Redis
	return id, nil
}

// verifyCached serves a token (extractCandidate's) from the cache,
// re-checking its time claims against now, or checks its shape, verifies
// it and caches the result; hit reports a cache hit. link is the token's
// link (verified.link) when it is current at now.
func (v *Verifier) verifyCached(ctx context.Context, tok string, now time.Time) (ver *verified, link *linkEntry, hit bool, e *Error) {
	if v.tokens == nil {
		ver, e = v.verifyShaped(ctx, tok)
	} else {
		key := v.tokens.key(tok)
		if ver, link, rej, ok := v.tokens.get(key, tok, now, v.links); ok {
			return ver, link, true, rej
		}
		if ver, e = v.verifyShaped(ctx, tok); e == nil {
			// A copy: tok is part of the request's header, which the
			// entry must not keep alive.
			ver.token = strings.Clone(tok)
			v.tokens.put(key, ver, now)
		}
	}
	if e != nil {
		return nil, nil, false, e
	}
	if l := ver.link.Load(); v.links.current(l, now) { // a customer claim's entry
		link = l
	}
	return ver, link, false, nil
}

// verifyShaped is verify of a token that passes checkShape.
func (v *Verifier) verifyShaped(ctx context.Context, tok string) (*verified, *Error) {
	if _, e := checkShape(tok); e != nil {
		return nil, e
	}
	return v.verify(ctx, tok)
}

// verify checks signature and claims with golang-jwt and extracts the
// identity claims.
func (v *Verifier) verify(ctx context.Context, tok string) (*verified, *Error) {
	v.verifications.Add(1)
	claims := jwt.MapClaims{}
	t, err := v.parser.ParseWithClaims(tok, claims, func(t *jwt.Token) (any, error) {
		return v.keyFor(ctx, t)
	})
	if err != nil {
		return nil, v.classify(t, claims, err)
	}
	// RFC 7515 §4.1.11: a token whose "crit" extensions we do not implement
	// must be rejected, not verified as if they were absent.
	if _, ok := t.Header["crit"]; ok {
		return nil, failf(ReasonMalformed, `"crit" header parameter is not supported`)
	}
	return v.identityClaims(claims)
}

// keyFor is the jwt.Keyfunc. golang-jwt has already checked alg against the
// allowlist; keyFor only hands out keys pinned to that alg, and never looks
// at "jwk", "jku" or "x5u" headers (keys supplied by the token itself,
// CVE-2018-0114).
func (v *Verifier) keyFor(ctx context.Context, t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if supportedAlgs[alg] == "HS" {
		// HS* is allowed only with an HMACSecret (validate), and the secret
		// is the only key an HS* token is ever checked against.
		return v.hmac, nil
	}
	kid, hasKID := "", false
	if raw, ok := t.Header["kid"]; ok {
		s, ok := raw.(string)
		if !ok {
			return nil, errBadKID
		}
		kid, hasKID = s, true
	}
	keys, elsewhere := v.static.appendCandidates(nil, alg, kid, hasKID)
	if v.jwks != nil {
		ks := v.jwks.keys.Load()
		if hasKID && !ks.hasKID(kid) && v.jwks.refetch(ctx) {
			ks = v.jwks.keys.Load()
		}
		var e bool
		keys, e = ks.appendCandidates(keys, alg, kid, hasKID)
		elsewhere = elsewhere || e
	}
	switch {
	case len(keys) == 1:
		return keys[0], nil
	case len(keys) > 1:
		set := jwt.VerificationKeySet{Keys: make([]jwt.VerificationKey, len(keys))}
		for i, k := range keys {
			set.Keys[i] = k
		}
		return set, nil
	case elsewhere:
		return nil, fmt.Errorf("%w: kid %q, alg %s", errKeyNotValid, kid, alg)
	default:
		return nil, fmt.Errorf("%w: kid %q, alg %s", errUnknownKey, kid, alg)
	}
}

// classify maps a golang-jwt error to a Reason. Order matters where a token
// has several faults: golang-jwt itself checks the algorithm, then the
// signature, and only then the claims, so an expired token with a bad
// signature is a bad signature.
func (v *Verifier) classify(t *jwt.Token, claims jwt.MapClaims, err error) *Error {
	alg := ""
	if t != nil {
		alg, _ = t.Header["alg"].(string)
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fail(ReasonMalformed, err)
	case t != nil && !v.o.allowed(alg):
		return fail(ReasonBadAlgorithm, fmt.Errorf("alg %q not allowed: %w", alg, err))
	case errors.Is(err, errUnknownKey):
		return fail(ReasonUnknownKey, err)
	case errors.Is(err, errKeyNotValid):
		return fail(ReasonBadAlgorithm, err)
	case errors.Is(err, errBadKID):
		return fail(ReasonMalformed, err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return fail(ReasonBadSignature, err)
	case errors.Is(err, jwt.ErrInvalidType):
		return fail(ReasonMalformed, err)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return fail(ReasonBadAudience, err)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return fail(ReasonBadIssuer, err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return fail(ReasonExpired, err)
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return fail(ReasonNotYetValid, err)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		// golang-jwt reports a missing aud or iss as a missing claim; name
		// the policy it breaks instead.
		if aud, _ := claims.GetAudience(); len(aud) == 0 || len(aud) == 1 && aud[0] == "" {
			return fail(ReasonBadAudience, err)
		}
		if iss, _ := claims.GetIssuer(); v.o.Issuer != "" && iss == "" {
			return fail(ReasonBadIssuer, err)
		}
		return fail(ReasonMissingClaim, err)
	default:
		return fail(ReasonMalformed, err)
	}
}
