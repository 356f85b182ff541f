package testrig

import (
	"strings"
	"testing"

	"github.com/stripe/stripe-go/v76"
)

func TestStripeMockSmoke(t *testing.T) {
	sm := StartStripeMock(t)
	sc := StripeClient(t, sm.URL())

	ev, err := sc.BillingMeterEvents.New(meterParams("smoke-1", 1))
	if err != nil {
		t.Fatalf("BillingMeterEvents.New against stripe-mock: %v", err)
	}
	if ev.Object != "billing.meter_event" {
		t.Errorf("meter event object = %q; want billing.meter_event", ev.Object)
	}
	c, err := sc.Customers.Get("cus_123", nil)
	if err != nil {
		t.Fatalf("Customers.Get against stripe-mock: %v", err)
	}
	if c.Object != "customer" || c.ID == "" {
		t.Errorf("customer = {ID:%q Object:%q}; want a customer fixture", c.ID, c.Object)
	}
}

// stripe-mock validates request shapes: a meter event without its required
// event_name is rejected.
func TestStripeMockValidates(t *testing.T) {
	sm := StartStripeMock(t)
	sc := StripeClient(t, sm.URL())
	_, err := sc.BillingMeterEvents.New(&stripe.BillingMeterEventParams{Payload: map[string]string{"value": "1"}})
	if se := stripeErr(t, err); se.HTTPStatusCode != 400 {
		t.Errorf("meter event without event_name = %d; want 400", se.HTTPStatusCode)
	}
}

func TestMissingStripeMock(t *testing.T) {
	cases := []struct {
		require   string
		wantFatal bool
	}{
		{"", false},
		{"1", true},
	}
	for _, tc := range cases {
		t.Run("require="+tc.require, func(t *testing.T) {
			t.Setenv(EnvRequireStripeMock, tc.require)
			f := runFake(t, func(tb testing.TB) { missingStripeMock(tb, errTest) })
			msg := f.skip
			if tc.wantFatal {
				msg = f.fatal
			}
			if !strings.Contains(msg, "go install github.com/stripe/stripe-mock@v0.203.0") {
				t.Errorf("fatal %q, skip %q; want the install hint (fatal: %v)", f.fatal, f.skip, tc.wantFatal)
			}
		})
	}
}

// With neither PATH nor GOPATH holding stripe-mock, StartStripeMock skips.
func TestStartStripeMockSkipsWhenAbsent(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv("GOPATH", t.TempDir())
	t.Setenv("GOBIN", "")
	t.Setenv(EnvRequireStripeMock, "")
	f := runFake(t, func(tb testing.TB) { StartStripeMock(tb) })
	if f.skip == "" || f.fatal != "" {
		t.Errorf("fatal %q, skip %q; want a skip", f.fatal, f.skip)
	}
}
