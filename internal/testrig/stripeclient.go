package testrig

import (
	"net/http"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
)

// Settings of the clients StripeClient builds.
const (
	StripeTestKey       = "sk_test_tollgate"
	stripeClientTimeout = 5 * time.Second // stripe-go's own default is 80 s
	stripeClientRetries = 2
)

// StripeClient returns a stripe-go client whose API, Connect and Uploads
// backends all talk to baseURL (a StripeDouble or StripeMock URL), with key
// StripeTestKey, 2 network retries, a 5 s HTTP timeout and logging off. Its
// idle connections are closed at cleanup.
func StripeClient(tb testing.TB, baseURL string) *client.API {
	tb.Helper()
	transport := http.DefaultTransport.(*http.Transport).Clone()
	tb.Cleanup(transport.CloseIdleConnections)
	backend := stripe.GetBackendWithConfig(stripe.APIBackend, &stripe.BackendConfig{
		URL:               stripe.String(baseURL),
		HTTPClient:        &http.Client{Timeout: stripeClientTimeout, Transport: transport},
		MaxNetworkRetries: stripe.Int64(stripeClientRetries),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
		EnableTelemetry:   stripe.Bool(false),
	})
	return client.New(StripeTestKey, &stripe.Backends{API: backend, Connect: backend, Uploads: backend})
}
