package sidecar

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/logging"
	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/webhook"
)

// Issue 12: every line a whole run writes is one JSON object without a
// duplicate key (the webhook line used to carry request_id twice), and
// every access line carries the status the client really got (mounts used
// to log status 0).
func TestLogLinesOfAWholeRun(t *testing.T) {
	rd := testrig.StartRedis(t)
	d := testrig.NewStripeDouble(t)
	d.PutCustomer(&stripe.Customer{ID: "cus_logs"})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Tollgate-Usage", "2")
		io.WriteString(w, "ok")
	}))
	defer app.Close()
	cfg := webhookConfig(t, app.URL, rd.URL(), d.URL())
	cfg.Routes = []*config.Route{{Path: "/api/**", Require: config.Require{Subscription: true}, Meter: "calls"}}
	cfg.Metering.Meters = map[string]*config.Meter{"calls": {EventName: "api_calls"}}
	cfg.Metering.FlushInterval, cfg.Metering.Window = 50*time.Millisecond, time.Second
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &testrig.LogBuffer{}
	r := startLogged(t, cfg, logging.New(config.Log{Level: "debug", Format: "json"}, logs))
	token := customerToken(t, strings.Repeat("k", 32), "cus_logs")

	sent := map[string]int{} // request id → status the client got
	n := 0
	send := func(method, path, tok string, body []byte, hdr map[string]string) int {
		t.Helper()
		n++
		id := fmt.Sprintf("logtest-%d", n)
		var rdr io.Reader
		if body != nil {
			rdr = strings.NewReader(string(body))
		}
		req, _ := http.NewRequest(method, "http://"+r.sc.ProxyAddr()+path, rdr)
		req.Header.Set("X-Request-Id", id)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		sent[id] = resp.StatusCode
		return resp.StatusCode
	}

	send("GET", "/api/x", "", nil, nil)        // 401
	send("GET", "/api/x", token, nil, nil)     // 402
	send("GET", "/api/a%2fb", token, nil, nil) // 400
	send("GET", "/nowhere", token, nil, nil)   // 403 no_route
	send("POST", "/_tollgate/stripe/webhook", "", []byte(`{}`), map[string]string{
		"Content-Type": "application/json", "Stripe-Signature": "t=1,v1=bad"}) // 400 from the mount
	d.PutSubscription(&stripe.Subscription{ID: "sub_logs", Customer: &stripe.Customer{ID: "cus_logs"}, Status: "active",
		CurrentPeriodEnd: time.Now().Add(time.Hour).Unix(),
		Items:            &stripe.SubscriptionItemList{Data: []*stripe.SubscriptionItem{{ID: "si_1", Price: &stripe.Price{ID: "price_pro"}}}}})
	ev := newEvent(t, "evt_logs", "customer.subscription.created",
		map[string]any{"id": "sub_logs", "object": "subscription", "customer": "cus_logs", "status": "active"})
	if code := send("POST", "/_tollgate/stripe/webhook", "", ev, map[string]string{
		"Content-Type": "application/json", "Stripe-Signature": webhook.SignatureHeader(ev, webhookSecret, time.Now())}); code != 200 {
		t.Fatalf("webhook = %d; want 200", code)
	}
	testrig.Eventually(t, "the subscription to be enforced", func() bool { return send("GET", "/api/x", token, nil, nil) == 200 })
	send("GET", "/_tollgate/billing/subscription", token, nil, nil) // a mount behind auth
	r.stop()
	<-r.done
	r.done <- nil // for the cleanup's receive

	lines, err := testrig.ParseLogLines(logs.String())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, l := range lines {
		id, _ := l["request_id"].(string)
		if l["msg"] != "request" {
			continue
		}
		want, ours := sent[id]
		if !ours {
			t.Errorf("access line for a request this test did not send: %v", l)
			continue
		}
		seen[id] = true
		if got := fmt.Sprint(l["status"]); got != fmt.Sprint(want) {
			t.Errorf("access line of %s (%v %v) says status %s; the client got %d", id, l["method"], l["path"], got, want)
		}
	}
	for id := range sent {
		if !seen[id] {
			t.Errorf("no access line for request %s", id)
		}
	}
	for _, l := range lines {
		if l["msg"] == "webhook delivery" && l["request_id"] == nil {
			t.Errorf("webhook delivery line without request_id: %v", l)
		}
	}
}
