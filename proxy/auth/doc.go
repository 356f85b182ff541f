// Package auth verifies the JWT that identifies the caller of every proxied
// request and maps it to a Stripe customer.
//
// A [Verifier] is built once from [Options] with [New]. Keys come from an HMAC
// secret, PEM public keys, or a JWKS URL; every key is pinned to the
// algorithms it may verify, so a token's "alg" header can never pick an
// algorithm the operator did not allow for that key (the key-confusion class
// of CVE-2015-9235). [Verifier.Authenticate] reads the token from the
// Authorization header (or one named cookie), verifies it, and returns an
// [Identity]. Verified tokens are cached by SHA-256 so an RSA or ECDSA
// verification is paid once per token; time-based claims are re-checked on
// every hit.
//
// Errors returned by Authenticate are always *[Error]. Its Reason is the
// value of the "result" label of tollgate_jwt_validations_total; its message
// carries the cause for logs and must never be sent to clients (use
// [Error.ClientMessage]).
package auth
