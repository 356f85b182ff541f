package billing

import (
	"errors"
	"net/http"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/proxy"
)

// Answers of the billing API, in the SPEC's error shape.
var (
	errNotFound = &proxy.HTTPError{Status: http.StatusNotFound, Code: "not_found",
		Msg: "No such billing endpoint."}
	errMethod = &proxy.HTTPError{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed",
		Msg: "This billing endpoint does not take this method; see the Allow header."}
	errCrossOrigin = &proxy.HTTPError{Status: http.StatusForbidden, Code: "cross_origin",
		Msg: "Cross-origin requests may not change billing."}
	errNoIdentity = &proxy.HTTPError{Status: http.StatusUnauthorized, Code: "unauthenticated",
		Msg: "A valid bearer token is required."}
	errNoCustomer = &proxy.HTTPError{Status: http.StatusConflict, Code: "no_customer",
		Msg: "No Stripe customer is linked to this account yet; start a checkout first."}
	errNoSubscription = &proxy.HTTPError{Status: http.StatusConflict, Code: "no_subscription",
		Msg: "This account has no subscription to change; start a checkout first."}
	errCanceling = &proxy.HTTPError{Status: http.StatusConflict, Code: "subscription_canceling",
		Msg: "The subscription ends at the period end; resume it before changing its plan."}
	errUnavailable = &proxy.HTTPError{Status: http.StatusServiceUnavailable, Code: "billing_unavailable",
		Msg: "Billing cannot be reached right now; try again shortly.", RetryAfter: 2}
	errStripeRefused = &proxy.HTTPError{Status: http.StatusBadGateway, Code: "billing_failed",
		Msg: "The billing provider refused the request; it has been logged."}
	errIdempotency = &proxy.HTTPError{Status: http.StatusConflict, Code: "idempotency_conflict",
		Msg: "This Idempotency-Key was already used with other parameters; use a new key for a new request."}
)

func badRequest(msg string) *proxy.HTTPError {
	return &proxy.HTTPError{Status: http.StatusBadRequest, Code: "invalid_request", Msg: msg}
}

func conflict(code, msg string) *proxy.HTTPError {
	return &proxy.HTTPError{Status: http.StatusConflict, Code: code, Msg: msg}
}

// stripeFailure turns a failed Stripe call into an answer: outages and
// rate limits are worth a retry (503), card errors are the customer's to
// fix (their message is meant for customers), anything else is a
// configuration or integration fault, logged with Stripe's details.
func stripeFailure(err error) *proxy.HTTPError {
	var se *stripe.Error
	switch {
	case errors.As(err, &se) && se.Type == stripe.ErrorTypeCard:
		msg := se.Msg
		if msg == "" {
			msg = "The payment was declined."
		}
		return &proxy.HTTPError{Status: http.StatusPaymentRequired, Code: "payment_failed", Msg: msg, Err: err}
	case errors.As(err, &se) && se.Type == stripe.ErrorTypeIdempotency:
		return errIdempotency.WithCause(err)
	case errors.As(err, &se) && (se.HTTPStatusCode == http.StatusTooManyRequests || se.HTTPStatusCode >= 500):
		return errUnavailable.WithCause(err)
	case errors.As(err, &se):
		return errStripeRefused.WithCause(err)
	}
	return errUnavailable.WithCause(err) // the network, or a timeout
}
