package stripeapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/form"
)

// Stripe's answers carry customer PII (emails, names, addresses, phone
// numbers: customers, invoices, checkout sessions' customer_details, the
// payment_method of a card error). tollgate logs Stripe traffic as ids,
// types and codes only, at every level: every error the client returns
// prints as Describe does, and stripe-go's own log lines are rewritten
// before they reach the log (slogAdapter).

// Error is a Stripe API error as tollgate returns and logs it: its Error()
// shows the status, type, codes, parameter name and request id, never
// Stripe's message (which can echo what was sent) or the objects it
// embeds. errors.As still finds the *stripe.Error (with its message, for
// callers that show a card decline to the customer).
type Error struct{ se *stripe.Error }

func (e *Error) Error() string { return describeStripe(e.se) }
func (e *Error) Unwrap() error { return e.se }

// Describe renders an error for a log line without Stripe's PII.
func Describe(err error) string {
	if err == nil {
		return ""
	}
	return redact(err).Error()
}

func describeStripe(se *stripe.Error) string {
	var b strings.Builder
	fmt.Fprintf(&b, "stripe: HTTP %d %s", se.HTTPStatusCode, se.Type)
	for _, f := range [][2]string{
		{"code", string(se.Code)}, {"decline_code", string(se.DeclineCode)}, {"param", se.Param},
		{"request_id", se.RequestID}, {"charge", se.ChargeID}, {"payment_method_type", string(se.PaymentMethodType)},
	} {
		if f[1] != "" {
			fmt.Fprintf(&b, " %s=%s", f[0], f[1])
		}
	}
	return b.String()
}

// redact returns err as tollgate may log it. A *stripe.Error is wrapped
// in *Error, and the objects it embeds are cut down to their ids (so
// that even code that digs the *stripe.Error out and prints it shows no
// billing details). stripe-go's "Couldn't deserialize JSON" error loses
// the response body sample it quotes.
func redact(err error) error {
	if err == nil {
		return nil
	}
	var mine *Error
	var done *redacted
	if errors.As(err, &mine) || errors.As(err, &done) {
		return err
	}
	if se, ok := err.(*stripe.Error); ok {
		stripObjects(se)
		return &Error{se: se}
	}
	var se *stripe.Error
	if errors.As(err, &se) {
		// Wrapped by someone else: keep their context, describe ours.
		raw := se.Error()
		stripObjects(se)
		return &redacted{msg: strings.ReplaceAll(err.Error(), raw, describeStripe(se)), err: err}
	}
	msg := err.Error()
	if i := strings.Index(msg, ", body sample: '"); i >= 0 {
		if j := strings.LastIndex(msg, "'): "); j > i {
			return errors.New(msg[:i] + ", body sample withheld): " + msg[j+len("'): "):])
		}
		return errors.New(msg[:i] + ", body sample withheld)")
	}
	return err
}

// redacted is an error chain holding a *stripe.Error, printed as Describe
// prints it; it unwraps to the chain.
type redacted struct {
	msg string
	err error
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }

// stripObjects keeps only the ids of the objects a Stripe error embeds.
func stripObjects(se *stripe.Error) {
	if pi := se.PaymentIntent; pi != nil {
		se.PaymentIntent = &stripe.PaymentIntent{ID: pi.ID}
	}
	if pm := se.PaymentMethod; pm != nil {
		se.PaymentMethod = &stripe.PaymentMethod{ID: pm.ID, Type: pm.Type}
	}
	if si := se.SetupIntent; si != nil {
		se.SetupIntent = &stripe.SetupIntent{ID: si.ID}
	}
	if src := se.Source; src != nil {
		se.Source = &stripe.PaymentSource{ID: src.ID, Type: src.Type}
	}
}

// redactingBackend returns every error of a stripe.Backend redacted, so
// that no caller can log Stripe's PII by logging an error it got back.
type redactingBackend struct{ stripe.Backend }

func (b redactingBackend) Call(method, path, key string, params stripe.ParamsContainer, v stripe.LastResponseSetter) error {
	return redact(b.Backend.Call(method, path, key, params, v))
}

func (b redactingBackend) CallStreaming(method, path, key string, params stripe.ParamsContainer, v stripe.StreamingLastResponseSetter) error {
	return redact(b.Backend.CallStreaming(method, path, key, params, v))
}

func (b redactingBackend) CallRaw(method, path, key string, body *form.Values, params *stripe.Params, v stripe.LastResponseSetter) error {
	return redact(b.Backend.CallRaw(method, path, key, body, params, v))
}

func (b redactingBackend) CallMultipart(method, path, key, boundary string, body *bytes.Buffer, params *stripe.Params, v stripe.LastResponseSetter) error {
	return redact(b.Backend.CallMultipart(method, path, key, boundary, body, params, v))
}

// summarize turns a response body into what may be logged: the object
// type and id, and for a list the ids it holds.
func summarize(body string) []any {
	var obj struct {
		Object string `json:"object"`
		ID     string `json:"id"`
		Data   []struct {
			Object string `json:"object"`
			ID     string `json:"id"`
		} `json:"data"`
		HasMore bool `json:"has_more"`
	}
	if err := json.Unmarshal([]byte(body), &obj); err != nil {
		return []any{"bytes", len(body)}
	}
	attrs := []any{"object", obj.Object}
	if obj.ID != "" {
		attrs = append(attrs, "id", obj.ID)
	}
	if obj.Object == "list" || obj.Object == "search_result" {
		ids := make([]string, 0, len(obj.Data))
		for _, d := range obj.Data {
			ids = append(ids, d.ID)
		}
		attrs = append(attrs, "ids", ids, "has_more", obj.HasMore)
	}
	return attrs
}
