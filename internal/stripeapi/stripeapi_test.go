package stripeapi

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

func TestOperation(t *testing.T) {
	for _, c := range []struct{ method, path, want string }{
		{"GET", "/v1/customers/cus_NffrFeUfNV2Hib", "GET /v1/customers/{id}"},
		{"POST", "/v1/billing/meter_events", "POST /v1/billing/meter_events"},
		{"GET", "/v1/subscriptions", "GET /v1/subscriptions"},
		{"POST", "/v1/subscription_items/si_N5x9/usage_records", "POST /v1/subscription_items/{id}/usage_records"},
	} {
		if got := Operation(c.method, c.path); got != c.want {
			t.Errorf("Operation(%q, %q) = %q; want %q", c.method, c.path, got, c.want)
		}
	}
}

// The client goes to api_base, retries a 500 with stripe-go's own retry,
// and counts both attempts by operation and code.
func TestClientAgainstDouble(t *testing.T) {
	d := testrig.NewStripeDouble(t)
	d.PutCustomer(&stripe.Customer{ID: "cus_1", Email: "a@example.com"})
	d.FailNext(1, 500)
	m := metrics.New()
	api := New(config.Stripe{SecretKey: "sk_test_x", APIBase: d.URL(), Timeout: 5e9, MaxNetworkRetries: 2}, m, nil)
	c, err := api.Customers.Get("cus_1", &stripe.CustomerParams{})
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if c.Email != "a@example.com" {
		t.Errorf("email = %q", c.Email)
	}
	for _, code := range []string{"500", "200"} {
		if got := testutil.ToFloat64(m.StripeRequests.WithLabelValues("GET /v1/customers/{id}", code)); got != 1 {
			t.Errorf("stripe_requests_total{code=%s} = %v; want 1", code, got)
		}
	}
}
