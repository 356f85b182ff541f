package webhook

import (
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// The open-invoice read of invoice events (GET /v1/invoices with customer,
// status=open and limit=1) is a request Stripe's spec accepts: stripe-mock
// validates it and answers its invoice fixture. What the answer means
// (the newest open invoice, its attempts) is tested on the double.
func TestStripeMockAcceptsFailedInvoiceRead(t *testing.T) {
	mock := testrig.StartStripeMock(t)
	api := NewStripeAPI(testrig.StripeClient(t, mock.URL()))
	fi, err := api.FailedInvoice(t.Context(), "cus_mock_dunning")
	if err != nil {
		t.Fatalf("FailedInvoice on stripe-mock: %v", err)
	}
	if fi != nil && (!strings.HasPrefix(fi.ID, "in_") || fi.AttemptCount <= 0) {
		t.Errorf("FailedInvoice = %+v; want nil or stripe-mock's attempted invoice fixture", fi)
	}
}
