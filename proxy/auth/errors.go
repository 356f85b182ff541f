package auth

import (
	"errors"
	"fmt"
)

// Sentinels callers branch on with errors.Is.
var (
	// ErrNoCredentials means the request carried no token at all. Routes with
	// auth "optional" or "none" let such requests through; every other
	// Authenticate error means a token was present but unusable (401).
	ErrNoCredentials = errors.New("no credentials")

	// ErrLinkUnavailable means the token is valid but the user→customer link
	// could not be read and no recent copy was cached. It is not the caller's
	// fault: answer 503, not 401.
	ErrLinkUnavailable = errors.New("user link lookup failed")
)

// Reasons are the values of Error.Reason and of the "result" label of the
// Options.Validations counter. The set is closed so the metric's cardinality
// is bounded.
const (
	ReasonOK                  = "ok"
	ReasonMissing             = "missing"              // no token: ErrNoCredentials
	ReasonMalformed           = "malformed"            // not a JWS compact token, bad scheme, undecodable, wrong claim types, "crit"
	ReasonTooLarge            = "too_large"            // longer than Options.MaxTokenBytes
	ReasonMultipleCredentials = "multiple_credentials" // two Authorization headers, header and cookie, two cookies
	ReasonBadAlgorithm        = "bad_algorithm"        // alg not allowed (incl. "none") or not allowed for the selected key
	ReasonUnknownKey          = "unknown_key"          // no key for this kid/alg, even after a JWKS refetch
	ReasonBadSignature        = "bad_signature"
	ReasonExpired             = "expired"
	ReasonNotYetValid         = "not_yet_valid" // nbf or iat in the future (beyond leeway)
	ReasonBadIssuer           = "bad_issuer"    // iss missing or different (only when Options.Issuer is set)
	ReasonBadAudience         = "bad_audience"  // aud missing, empty, or none of Options.Audience
	ReasonMissingClaim        = "missing_claim" // exp absent
	ReasonBadClaims           = "bad_claims"    // user or customer claim unusable
	ReasonLinkUnavailable     = "link_unavailable"
)

var allReasons = []string{
	ReasonOK, ReasonMissing, ReasonMalformed, ReasonTooLarge, ReasonMultipleCredentials,
	ReasonBadAlgorithm, ReasonUnknownKey, ReasonBadSignature, ReasonExpired, ReasonNotYetValid,
	ReasonBadIssuer, ReasonBadAudience, ReasonMissingClaim, ReasonBadClaims, ReasonLinkUnavailable,
}

// Error is the only error type Authenticate returns. Err holds the cause for
// logs (golang-jwt's message, the offending claim); it is never meant for the
// client, because a precise cause helps an attacker probe the verifier.
type Error struct {
	Reason string // one of the Reason constants
	Err    error
}

func (e *Error) Error() string { return fmt.Sprintf("auth: %s: %v", e.Reason, e.Err) }

func (e *Error) Unwrap() error { return e.Err }

// ClientMessage is the text safe to send in a 401/503 body. It distinguishes
// only "no token" from "bad token" (which RFC 6750 §3.1 also distinguishes)
// and the server-side link outage.
func (e *Error) ClientMessage() string {
	switch e.Reason {
	case ReasonMissing:
		return "authentication required"
	case ReasonLinkUnavailable:
		return "identity temporarily unavailable"
	default:
		return "invalid token"
	}
}

func fail(reason string, err error) *Error { return &Error{Reason: reason, Err: err} }

func failf(reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// OptionError is one problem found by New in Options. New joins every problem
// (errors.Join) so an operator fixes them in one pass.
type OptionError struct {
	Field   string // Go field path, e.g. "Audience[1]" or "PublicKeyFiles[0]"
	Problem string
}

func (e *OptionError) Error() string { return "auth: Options." + e.Field + ": " + e.Problem }
