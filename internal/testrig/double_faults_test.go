package testrig

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// rawGet sends an authenticated GET and returns the status and the
// Stripe-Should-Retry header.
func rawGet(t *testing.T, d *StripeDouble, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, d.URL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+StripeTestKey)
	resp, err := d.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Stripe-Should-Retry")
}

func TestDoubleUnknownsAreStripe404s(t *testing.T) {
	d := NewStripeDouble(t)
	sc := StripeClient(t, d.URL())
	cases := []struct {
		name string
		call func() error
	}{
		{"subscription", func() error { _, err := sc.Subscriptions.Get("sub_nope", nil); return err }},
		{"event", func() error { _, err := sc.Events.Get("evt_nope", nil); return err }},
		{"endpoint", func() error { _, err := sc.Invoices.Get("in_nope", nil); return err }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			se := stripeErr(t, tc.call())
			if se.HTTPStatusCode != http.StatusNotFound || se.Code != stripe.ErrorCodeResourceMissing {
				t.Errorf("error = %d %q; want 404 resource_missing", se.HTTPStatusCode, se.Code)
			}
		})
	}
}

func TestDoubleRequiresAPIKey(t *testing.T) {
	d := NewStripeDouble(t)
	resp, err := d.srv.Client().Get(d.URL() + "/v1/customers/cus_A")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET without Authorization = %d; want 401", resp.StatusCode)
	}
}

func TestDoubleFaultsAndStripeGoRetries(t *testing.T) {
	cases := []struct {
		name         string
		fault        Fault
		wantErr      bool
		wantRequests int
	}{
		{"503 is retried", FaultFor(http.StatusServiceUnavailable), false, 2},
		{"429 rate_limit is not", FaultFor(http.StatusTooManyRequests), true, 1},
		{"429 lock_timeout is", Fault{Status: 429, Type: "invalid_request_error", Code: "lock_timeout", ShouldRetry: "true"}, false, 2},
		{"402 is not", FaultFor(http.StatusPaymentRequired), true, 1},
		{"fault for another path", Fault{Status: 500, Type: "api_error", PathPrefix: "/v1/subscriptions"}, false, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := NewStripeDouble(t)
			sc := StripeClient(t, d.URL())
			d.PutCustomer(&stripe.Customer{ID: "cus_A"})
			d.FailNextWith(1, tc.fault)
			_, err := sc.Customers.Get("cus_A", nil)
			if (err != nil) != tc.wantErr {
				t.Errorf("Customers.Get error = %v; want error %v", err, tc.wantErr)
			}
			if n := len(d.Requests()); n != tc.wantRequests {
				t.Errorf("requests = %d; want %d", n, tc.wantRequests)
			}
		})
	}
}

func TestDoubleFailRateIsDeterministic(t *testing.T) {
	pattern := func(seed int64) string {
		d := NewStripeDouble(t)
		d.PutCustomer(&stripe.Customer{ID: "cus_A"})
		d.FailRate(0.5, http.StatusServiceUnavailable, seed)
		var b strings.Builder
		for range 40 {
			status, retry := rawGet(t, d, "/v1/customers/cus_A")
			switch {
			case status == http.StatusOK:
				b.WriteByte('.')
			case status == http.StatusServiceUnavailable && retry == "true":
				b.WriteByte('x')
			default:
				t.Fatalf("status %d, Stripe-Should-Retry %q; want 200, or 503 with true", status, retry)
			}
		}
		return b.String()
	}
	a, b, c := pattern(7), pattern(7), pattern(8)
	if a != b {
		t.Errorf("seed 7 twice: %s vs %s; want the same", a, b)
	}
	if a == c {
		t.Errorf("seeds 7 and 8 both gave %s; want different", a)
	}
	if n := strings.Count(a, "x"); n < 8 || n > 32 {
		t.Errorf("seed 7 failed %d of 40; want about half", n)
	}
}

func TestDoubleDelay(t *testing.T) {
	d := NewStripeDouble(t)
	d.PutCustomer(&stripe.Customer{ID: "cus_A"})
	d.Delay(200 * time.Millisecond)
	start := time.Now()
	if status, _ := rawGet(t, d, "/v1/customers/cus_A"); status != http.StatusOK {
		t.Fatalf("status = %d; want 200", status)
	}
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Errorf("answer took %v; want at least the 200ms delay", el)
	}
	d.Reset()
	start = time.Now()
	rawGet(t, d, "/v1/customers/cus_A")
	if el := time.Since(start); el >= 200*time.Millisecond {
		t.Errorf("after Reset the answer took %v; want no delay", el)
	}
}

// Held answers are let go by Reset, and by cleanup when the client never
// gives up, so no test hangs on them.
func TestDoubleHeldAnswersAreReleased(t *testing.T) {
	form := url.Values{"event_name": {"api_calls"}, "payload[stripe_customer_id]": {"cus_A"}, "payload[value]": {"1"}}
	for _, how := range []string{"reset", "cleanup"} {
		t.Run(how, func(t *testing.T) {
			done := make(chan int, 1)
			t.Run("double", func(t *testing.T) {
				d := NewStripeDouble(t)
				d.TimeoutAfterRecord(1, 1)
				go func() {
					req, _ := http.NewRequest(http.MethodPost, d.URL()+"/v1/billing/meter_events", strings.NewReader(form.Encode()))
					req.Header.Set("Authorization", "Bearer "+StripeTestKey)
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
					if err != nil {
						done <- -1
						return
					}
					resp.Body.Close()
					done <- resp.StatusCode
				}()
				WaitFor(t, 5*time.Second, func() error {
					if len(d.MeterEvents()) != 1 {
						return errors.New("meter event not recorded yet")
					}
					// The event is recorded while the answer is being
					// decided; only then does the handler take the release
					// channel it holds the answer on (with the status, under
					// the same lock). A Reset in between would replace that
					// channel before it was taken, and the answer would be
					// held until maxHold.
					if rs := d.Requests(); len(rs) != 1 || rs[0].Status == 0 {
						return errors.New("answer not held yet")
					}
					return nil
				})
				if how == "reset" {
					d.Reset()
				}
			})
			select {
			case status := <-done:
				if how == "reset" && status != http.StatusOK {
					t.Errorf("held answer after Reset = %d; want 200", status)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("held answer not released by %s", how)
			}
		})
	}
}

func TestDoubleHandleAndEvents(t *testing.T) {
	d := NewStripeDouble(t)
	sc := StripeClient(t, d.URL())
	d.Handle("GET /v1/invoices/{id}", func(c *Call) *Response {
		return JSONResponse(http.StatusOK, map[string]any{"id": c.Param("id"), "object": "invoice", "status": "paid"})
	})
	inv, err := sc.Invoices.Get("in_1", nil)
	if err != nil || inv.ID != "in_1" || inv.Status != stripe.InvoiceStatusPaid {
		t.Errorf("Invoices.Get(in_1) = %+v, %v; want in_1 paid", inv, err)
	}

	d.PutEvent(&stripe.Event{ID: "evt_1", Type: "customer.subscription.updated", Data: &stripe.EventData{Raw: []byte(`{"id":"sub_1","object":"subscription"}`)}})
	ev, err := sc.Events.Get("evt_1", nil)
	if err != nil || ev.Type != "customer.subscription.updated" || ev.Data.Object["id"] != "sub_1" {
		t.Errorf("Events.Get(evt_1) = %+v, %v; want the event put", ev, err)
	}
}

func TestDoubleExpandCustomer(t *testing.T) {
	d := NewStripeDouble(t)
	sc := StripeClient(t, d.URL())
	d.PutCustomer(&stripe.Customer{ID: "cus_A", Email: "a@example.com"})
	d.PutSubscription(&stripe.Subscription{ID: "sub_1", Customer: &stripe.Customer{ID: "cus_A", Email: "stale@example.com"}, Status: stripe.SubscriptionStatusActive})

	plain, err := sc.Subscriptions.Get("sub_1", nil)
	if err != nil || plain.Customer.ID != "cus_A" || plain.Customer.Email != "" {
		t.Errorf("Get(sub_1) customer = %+v, %v; want the id only", plain.Customer, err)
	}
	params := &stripe.SubscriptionParams{}
	params.AddExpand("customer")
	exp, err := sc.Subscriptions.Get("sub_1", params)
	if err != nil || exp.Customer.Email != "a@example.com" {
		t.Errorf("Get(sub_1, expand customer) customer = %+v, %v; want the stored customer", exp.Customer, err)
	}
}
