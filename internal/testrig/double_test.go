package testrig

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// stripeErr unwraps err into a *stripe.Error or fails the test.
func stripeErr(t *testing.T, err error) *stripe.Error {
	t.Helper()
	var se *stripe.Error
	if !errors.As(err, &se) {
		t.Fatalf("error = %v (%T); want a *stripe.Error", err, err)
	}
	return se
}

// meterTimestamp is one timestamp for every meter event of the test binary,
// so repeated calls send identical parameters.
var meterTimestamp = time.Now().Add(-time.Hour).Unix()

func meterParams(identifier string, value int) *stripe.BillingMeterEventParams {
	return &stripe.BillingMeterEventParams{
		EventName:  stripe.String("api_calls"),
		Identifier: stripe.String(identifier),
		Payload:    map[string]string{"stripe_customer_id": "cus_A", "value": fmt.Sprint(value)},
		Timestamp:  stripe.Int64(meterTimestamp),
	}
}

// rawPost sends a form POST the way stripe-go does, without its retries.
func rawPost(t *testing.T, d *StripeDouble, path, key string, form url.Values) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, d.URL()+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+StripeTestKey)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := d.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, string(body)
}

func TestDoubleRetrieveCustomer(t *testing.T) {
	d := NewStripeDouble(t)
	sc := StripeClient(t, d.URL())
	d.PutCustomer(&stripe.Customer{ID: "cus_A", Email: "a@example.com", Metadata: map[string]string{"user_id": "u1"}})

	got, err := sc.Customers.Get("cus_A", nil)
	if err != nil {
		t.Fatalf("Customers.Get(cus_A): %v", err)
	}
	if got.ID != "cus_A" || got.Email != "a@example.com" || got.Metadata["user_id"] != "u1" || got.Object != "customer" {
		t.Errorf("Customers.Get(cus_A) = {ID:%q Email:%q Metadata:%v Object:%q}; want cus_A, a@example.com, user_id=u1, customer",
			got.ID, got.Email, got.Metadata, got.Object)
	}

	_, err = sc.Customers.Get("cus_missing", nil)
	se := stripeErr(t, err)
	if se.HTTPStatusCode != http.StatusNotFound || se.Code != stripe.ErrorCodeResourceMissing || se.Type != stripe.ErrorTypeInvalidRequest {
		t.Errorf("Customers.Get(cus_missing) error = %d %s %s; want 404 invalid_request_error resource_missing", se.HTTPStatusCode, se.Type, se.Code)
	}
	if n := d.Count(http.MethodGet, "/v1/customers/"); n != 2 {
		t.Errorf("Count(GET /v1/customers/) = %d; want 2 (a 404 is not retried)", n)
	}
}

func TestDoubleListSubscriptions(t *testing.T) {
	d := NewStripeDouble(t)
	sc := StripeClient(t, d.URL())
	for i := range 15 {
		d.PutSubscription(&stripe.Subscription{ID: fmt.Sprintf("sub_A%02d", i), Customer: &stripe.Customer{ID: "cus_A"},
			Status: stripe.SubscriptionStatusActive, Created: int64(1000 + i)})
	}
	d.PutSubscription(&stripe.Subscription{ID: "sub_Acanceled", Customer: &stripe.Customer{ID: "cus_A"},
		Status: stripe.SubscriptionStatusCanceled, Created: 2000})
	d.PutSubscription(&stripe.Subscription{ID: "sub_B", Customer: &stripe.Customer{ID: "cus_B"},
		Status: stripe.SubscriptionStatusActive, Created: 3000})

	cases := []struct {
		name      string
		status    string
		wantN     int
		wantFirst string
		wantPages int
	}{
		{"default hides canceled", "", 15, "sub_A14", 2},
		{"all", "all", 16, "sub_Acanceled", 2},
		{"canceled", "canceled", 1, "sub_Acanceled", 1},
		{"trialing", "trialing", 0, "", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := d.Count(http.MethodGet, "/v1/subscriptions")
			params := &stripe.SubscriptionListParams{Customer: stripe.String("cus_A")}
			if tc.status != "" {
				params.Status = stripe.String(tc.status)
			}
			params.Limit = stripe.Int64(10)
			var ids []string
			it := sc.Subscriptions.List(params)
			for it.Next() {
				s := it.Subscription()
				if s.Customer == nil || s.Customer.ID != "cus_A" {
					t.Errorf("subscription %s customer = %+v; want cus_A", s.ID, s.Customer)
				}
				ids = append(ids, s.ID)
			}
			if err := it.Err(); err != nil {
				t.Fatalf("List: %v", err)
			}
			if len(ids) != tc.wantN || (tc.wantN > 0 && ids[0] != tc.wantFirst) {
				t.Errorf("List(status=%q) = %v; want %d ids starting with %q", tc.status, ids, tc.wantN, tc.wantFirst)
			}
			if pages := d.Count(http.MethodGet, "/v1/subscriptions") - before; pages != tc.wantPages {
				t.Errorf("List(status=%q) took %d requests; want %d pages", tc.status, pages, tc.wantPages)
			}
		})
	}

	reqs := d.Requests()
	second := reqs[1] // page 2 of the first case
	if got := second.Form.Get("starting_after"); got != "sub_A05" {
		t.Errorf("page 2 starting_after = %q; want sub_A05 (the last id of page 1)", got)
	}

	d.DeleteSubscription("sub_A00")
	if _, err := sc.Subscriptions.Get("sub_A00", nil); stripeErr(t, err).HTTPStatusCode != http.StatusNotFound {
		t.Errorf("Subscriptions.Get(deleted) error = %v; want 404", err)
	}
	got, err := sc.Subscriptions.Get("sub_B", nil)
	if err != nil || got.Customer.ID != "cus_B" || got.Status != stripe.SubscriptionStatusActive {
		t.Errorf("Subscriptions.Get(sub_B) = %+v, %v; want active for cus_B", got, err)
	}
}

func TestDoubleActiveEntitlements(t *testing.T) {
	d := NewStripeDouble(t)
	sc := StripeClient(t, d.URL())
	d.SetActiveEntitlements("cus_A", "reports", "exports")

	var keys []string
	it := sc.EntitlementsActiveEntitlements.List(&stripe.EntitlementsActiveEntitlementListParams{Customer: stripe.String("cus_A")})
	for it.Next() {
		e := it.EntitlementsActiveEntitlement()
		if e.Object != "entitlements.active_entitlement" || e.Feature != "feat_test_"+e.LookupKey {
			t.Errorf("entitlement = %+v; want object entitlements.active_entitlement and feature feat_test_%s", e, e.LookupKey)
		}
		keys = append(keys, e.LookupKey)
	}
	if err := it.Err(); err != nil {
		t.Fatalf("List: %v", err)
	}
	if got, want := strings.Join(keys, ","), "reports,exports"; got != want {
		t.Errorf("lookup keys = %q; want %q", got, want)
	}
}

func TestDoubleMeterEventDedup(t *testing.T) {
	d := NewStripeDouble(t)
	sc := StripeClient(t, d.URL())

	ev, err := sc.BillingMeterEvents.New(meterParams("cus_A:api_calls:1700000000", 7))
	if err != nil {
		t.Fatalf("first meter event: %v", err)
	}
	if ev.Identifier != "cus_A:api_calls:1700000000" || ev.EventName != "api_calls" || ev.Payload["value"] != "7" {
		t.Errorf("meter event = %+v; want the identifier, event name and value sent", ev)
	}

	_, err = sc.BillingMeterEvents.New(meterParams("cus_A:api_calls:1700000000", 7))
	se := stripeErr(t, err)
	if se.HTTPStatusCode != http.StatusBadRequest || !strings.Contains(se.Msg, "An event already exists with identifier cus_A:api_calls:1700000000") {
		t.Errorf("duplicate error = %d %q; want 400 \"An event already exists with identifier ...\"", se.HTTPStatusCode, se.Msg)
	}
	if h := se.LastResponse.Header.Get("Stripe-Should-Retry"); h != "false" {
		t.Errorf("duplicate Stripe-Should-Retry = %q; want \"false\"", h)
	}
	if n := d.Count(http.MethodPost, "/v1/billing/meter_events"); n != 2 {
		t.Errorf("POSTs = %d; want 2 (the duplicate is not retried)", n)
	}
	if sum := d.SumMeterEvents("api_calls", "cus_A"); sum != 7 {
		t.Errorf("SumMeterEvents = %d; want 7", sum)
	}
}

func TestDoubleMeterEventValidation(t *testing.T) {
	d := NewStripeDouble(t)
	cases := []struct {
		name      string
		form      url.Values
		wantParam string
	}{
		{"no event name", url.Values{"payload[stripe_customer_id]": {"cus_A"}, "payload[value]": {"1"}}, "event_name"},
		{"no customer", url.Values{"event_name": {"e"}, "payload[value]": {"1"}}, "payload[stripe_customer_id]"},
		{"fractional value", url.Values{"event_name": {"e"}, "payload[stripe_customer_id]": {"cus_A"}, "payload[value]": {"1.5"}}, "payload[value]"},
		{"old timestamp", url.Values{"event_name": {"e"}, "payload[stripe_customer_id]": {"cus_A"}, "payload[value]": {"1"},
			"timestamp": {fmt.Sprint(time.Now().Add(-36 * 24 * time.Hour).Unix())}}, "timestamp"},
		{"long identifier", url.Values{"event_name": {"e"}, "payload[stripe_customer_id]": {"cus_A"}, "payload[value]": {"1"},
			"identifier": {strings.Repeat("x", 101)}}, "identifier"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawPost(t, d, "/v1/billing/meter_events", "", tc.form)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `"param":"`+tc.wantParam+`"`) {
				t.Errorf("POST %v = %d %s; want 400 for param %s", tc.form, resp.StatusCode, body, tc.wantParam)
			}
		})
	}
	if n := len(d.MeterEvents()); n != 0 {
		t.Errorf("MeterEvents() has %d events; want 0", n)
	}
}

func TestDoubleFailNextThenStripeGoRetries(t *testing.T) {
	d := NewStripeDouble(t)
	sc := StripeClient(t, d.URL())
	d.FailNext(1, http.StatusInternalServerError)

	if _, err := sc.BillingMeterEvents.New(meterParams("id-1", 3)); err != nil {
		t.Fatalf("meter event after one 500: %v", err)
	}
	reqs := d.Requests()
	if len(reqs) != 2 {
		t.Fatalf("requests = %d; want 2 (a 500, then the retry)", len(reqs))
	}
	if reqs[0].Status != http.StatusInternalServerError || reqs[1].Status != http.StatusOK {
		t.Errorf("statuses = %d, %d; want 500, 200", reqs[0].Status, reqs[1].Status)
	}
	if k := reqs[0].IdempotencyKey; k == "" || reqs[1].IdempotencyKey != k {
		t.Errorf("Idempotency-Keys = %q, %q; want the same non-empty key", k, reqs[1].IdempotencyKey)
	}
	if sum := d.SumMeterEvents("api_calls", "cus_A"); sum != 3 {
		t.Errorf("SumMeterEvents = %d; want 3", sum)
	}
}

func TestDoubleIdempotencyKeyReplay(t *testing.T) {
	d := NewStripeDouble(t)
	form := url.Values{"event_name": {"api_calls"}, "payload[stripe_customer_id]": {"cus_A"}, "payload[value]": {"2"}, "identifier": {"id-1"}}

	first, body1 := rawPost(t, d, "/v1/billing/meter_events", "key-1", form)
	again, body2 := rawPost(t, d, "/v1/billing/meter_events", "key-1", form)
	if first.StatusCode != http.StatusOK || again.StatusCode != http.StatusOK || body1 != body2 {
		t.Errorf("replay = %d %s; want the first answer %d %s", again.StatusCode, body2, first.StatusCode, body1)
	}
	if h := again.Header.Get("Idempotent-Replayed"); h != "true" {
		t.Errorf("Idempotent-Replayed = %q; want \"true\"", h)
	}

	form.Set("payload[value]", "5")
	other, body3 := rawPost(t, d, "/v1/billing/meter_events", "key-1", form)
	if other.StatusCode != http.StatusBadRequest || !strings.Contains(body3, "idempotency_error") {
		t.Errorf("same key, other params = %d %s; want 400 idempotency_error", other.StatusCode, body3)
	}
	if n := len(d.MeterEvents()); n != 1 {
		t.Errorf("MeterEvents() = %d events; want 1", n)
	}
}

func TestDoubleTimeoutAfterRecord(t *testing.T) {
	d := NewStripeDouble(t)
	sc := StripeClient(t, d.URL())
	d.TimeoutAfterRecord(1, 1)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	params := meterParams("id-timeout", 4)
	params.Context = ctx
	params.SetIdempotencyKey("key-timeout")
	if _, err := sc.BillingMeterEvents.New(params); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("meter event = %v; want a deadline error", err)
	}
	d.Reset()
	if evs := d.MeterEvents(); len(evs) != 1 || evs[0].Identifier != "id-timeout" {
		t.Fatalf("MeterEvents() = %+v; want the timed-out event recorded once", evs)
	}

	// The same call again (same Idempotency-Key) gets the saved answer.
	retry := meterParams("id-timeout", 4)
	retry.SetIdempotencyKey("key-timeout")
	if _, err := sc.BillingMeterEvents.New(retry); err != nil {
		t.Errorf("retry with the same Idempotency-Key: %v; want the replayed success", err)
	}
	// A new call with the same identifier is a duplicate.
	_, err := sc.BillingMeterEvents.New(meterParams("id-timeout", 4))
	if se := stripeErr(t, err); se.HTTPStatusCode != http.StatusBadRequest || !strings.Contains(se.Msg, "already exists") {
		t.Errorf("new call, same identifier = %d %q; want 400 already exists", se.HTTPStatusCode, se.Msg)
	}
	if sum := d.SumMeterEvents("api_calls", "cus_A"); sum != 4 {
		t.Errorf("SumMeterEvents = %d; want 4", sum)
	}
}

// Stripe answers 409 idempotency_key_in_use while the first request with a
// key is still executing.
func TestDoubleIdempotencyKeyInUse(t *testing.T) {
	d := NewStripeDouble(t)
	unblock, running := make(chan struct{}), make(chan struct{}, 1)
	d.Handle("POST /v1/customers", func(c *Call) *Response {
		running <- struct{}{}
		<-unblock
		return JSONResponse(http.StatusOK, map[string]any{"id": "cus_new", "object": "customer"})
	})
	first := make(chan int, 1)
	go func() {
		resp, _ := rawPostNoFatal(d, "/v1/customers", "key-busy")
		first <- resp
	}()
	// The request is recorded (Count) before its Idempotency-Key is claimed;
	// the handler runs only after the claim. Waiting for the record alone
	// let the second request claim the key first.
	select {
	case <-running:
	case <-time.After(5 * time.Second):
		t.Fatal("the first request did not reach its handler")
	}
	resp, body := rawPost(t, d, "/v1/customers", "key-busy", nil)
	close(unblock)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "idempotency_key_in_use") {
		t.Errorf("concurrent POST with the same key = %d %s; want 409 idempotency_key_in_use", resp.StatusCode, body)
	}
	if status := <-first; status != http.StatusOK {
		t.Errorf("first POST = %d; want 200", status)
	}
}

// rawPostNoFatal is rawPost for other goroutines: it returns the status, or
// -1 on a transport error.
func rawPostNoFatal(d *StripeDouble, path, key string) (int, error) {
	req, err := http.NewRequest(http.MethodPost, d.URL()+path, strings.NewReader(""))
	if err != nil {
		return -1, err
	}
	req.Header.Set("Authorization", "Bearer "+StripeTestKey)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Idempotency-Key", key)
	resp, err := d.srv.Client().Do(req)
	if err != nil {
		return -1, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
