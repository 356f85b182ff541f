package stripeapi

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

func cardError() *stripe.Error {
	return &stripe.Error{HTTPStatusCode: 402, Type: stripe.ErrorTypeCard, Code: stripe.ErrorCodeCardDeclined,
		DeclineCode: "generic_decline", Param: "payment_method", RequestID: "req_1",
		Msg:           "Your card was declined for jane@example.com.",
		PaymentMethod: &stripe.PaymentMethod{ID: "pm_1", BillingDetails: &stripe.PaymentMethodBillingDetails{Email: "jane@example.com", Name: "Jane Doe"}},
		PaymentIntent: &stripe.PaymentIntent{ID: "pi_1", ReceiptEmail: "jane@example.com", ClientSecret: "pi_1_secret_x"},
		Source:        &stripe.PaymentSource{ID: "src_1", Card: &stripe.Card{ID: "card_1", Name: "Jane Doe"}},
	}
}

// Customer PII in logs: a Stripe error prints as JSON with the message
// (which can echo input) and the objects it embeds (billing_details).
// Redacted, it shows ids, types and codes only, and callers still find
// the *stripe.Error and its message.
func TestRedactStripeError(t *testing.T) {
	err := redact(fmt.Errorf("billing: portal: %w", cardError()))
	got := err.Error()
	want := "billing: portal: stripe: HTTP 402 card_error code=card_declined decline_code=generic_decline param=payment_method request_id=req_1"
	if got != want {
		t.Errorf("redacted = %q; want %q", got, want)
	}
	var se *stripe.Error
	if !errors.As(err, &se) || se.Msg == "" || se.Code != stripe.ErrorCodeCardDeclined {
		t.Fatalf("errors.As lost the *stripe.Error: %v", se)
	}
	if js := se.Error(); strings.Contains(js, "Jane Doe") || strings.Contains(js, "pi_1_secret") || strings.Contains(js, `"receipt_email":"jane`) {
		t.Errorf("the embedded objects kept billing details: %s", js)
	}
	if se.PaymentMethod.ID != "pm_1" || se.PaymentIntent.ID != "pi_1" || se.Source.ID != "src_1" {
		t.Errorf("ids lost: %+v %+v %+v", se.PaymentMethod, se.PaymentIntent, se.Source)
	}
	if again := redact(err); again.Error() != got {
		t.Errorf("redacting twice = %q; want %q", again, got)
	}
}

// Customer PII in stripe-go's "Couldn't deserialize JSON" error, which
// quotes 500 bytes of the response body.
func TestRedactDeserializeError(t *testing.T) {
	raw := errors.New(`Couldn't deserialize JSON (response status: 200, body sample: '{"email":"jane@example.com", ...'): unexpected end of JSON input`)
	got := Describe(raw)
	want := "Couldn't deserialize JSON (response status: 200, body sample withheld): unexpected end of JSON input"
	if got != want {
		t.Errorf("Describe = %q; want %q", got, want)
	}
	if other := errors.New("dial tcp: connection refused"); Describe(other) != other.Error() {
		t.Errorf("an ordinary error changed: %q", Describe(other))
	}
}

// Customer PII in stripe-go's own log lines (it logs whole response bodies
// at debug): bodies become object type and ids, errors are described, and
// an unknown line keeps no arguments.
func TestSlogAdapterRewritesStripeGoLines(t *testing.T) {
	logs := &testrig.LogBuffer{}
	a := slogAdapter{slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	a.Debugf("Response: %s", `{"id":"cus_1","object":"customer","email":"jane@example.com","name":"Jane Doe"}`)
	a.Debugf("Response: %s", `{"object":"list","data":[{"id":"in_1","customer_email":"jane@example.com"}],"has_more":true}`)
	a.Errorf("Request error from Stripe (status %v): %v", 402, cardError())
	a.Errorf("%s", `Couldn't deserialize JSON (response status: 200, body sample: '{"email":"jane@example.com"'): x`)
	a.Infof("Some future line about %v", "jane@example.com")
	a.Infof("Requesting %v %v%v", "GET", "api.stripe.com", "/v1/customers/cus_1")
	out := logs.String()
	for _, want := range []string{`"id":"cus_1"`, `"object":"customer"`, `"ids":["in_1"]`, "code=card_declined",
		"body sample withheld", "Some future line about %v (arguments withheld)", "GET api.stripe.com/v1/customers/cus_1"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %s:\n%s", want, out)
		}
	}
	for _, p := range []string{"jane@example.com", "Jane Doe"} {
		if strings.Contains(out, p) {
			t.Errorf("logs hold %q:\n%s", p, out)
		}
	}
}

// Customer PII in logged errors: the client itself returns redacted
// errors, so whatever a caller logs of a failed call shows no PII.
func TestClientReturnsRedactedErrors(t *testing.T) {
	d := testrig.NewStripeDouble(t)
	d.FailNextWith(1, testrig.Fault{Status: 400, Type: "invalid_request_error", Code: "email_invalid",
		Message: "Invalid email address: jane@example.com"})
	api := New(config.Stripe{SecretKey: "sk_test_x", APIBase: d.URL(), Timeout: 5e9}, metrics.New(), nil)
	_, err := api.Customers.Get("cus_1", &stripe.CustomerParams{})
	var se *stripe.Error
	if err == nil || strings.Contains(err.Error(), "jane@example.com") || !errors.As(err, &se) || se.Code != "email_invalid" {
		t.Errorf("err = %v (stripe error %v); want a redacted error that still unwraps", err, se)
	}
}
