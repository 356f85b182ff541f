package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stripe/stripe-go/v76"
	stripewebhook "github.com/stripe/stripe-go/v76/webhook"

	"github.com/tollgate-dev/tollgate/webhook"
)

// trigger builds every event type it knows in Stripe's shape, signs it
// with the configured secret so that stripe-go's own (strict, same API
// version) ConstructEvent accepts it, and posts it to webhook.path.
func TestTriggerSignsRealisticEvents(t *testing.T) {
	const secret = "whsec_trigger_test"
	var mu sync.Mutex
	var got []stripe.Event
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ev, err := stripewebhook.ConstructEvent(body, r.Header.Get("Stripe-Signature"), secret)
		if err != nil || r.URL.Path != "/hooks/stripe" || r.Header.Get("Content-Type") != "application/json; charset=utf-8" {
			http.Error(w, fmt.Sprintf("path %s: %v", r.URL.Path, err), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
		io.WriteString(w, `{"received":true,"result":"processed"}`)
	}))
	defer srv.Close()
	cfgPath := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
upstream: http://127.0.0.1:3000
stripe: { trusted_payloads: true, webhook_secrets: [%s, whsec_second] }
webhook: { path: /hooks/stripe }
auth: { jwt: { algorithms: [HS256], audience: [api], hmac_secret: %q } }
plans: { gold: { prices: [price_gold] }, basic: { prices: [price_basic] } }
routes: [ { path: /**, auth: none } ]
`, secret, strings.Repeat("k", 32))), 0o600)

	for _, typ := range webhook.SampleTypes() {
		var out bytes.Buffer
		args := []string{"trigger", typ, "-config", cfgPath, "-url", srv.URL, "-customer", "cus_trig", "-user", "user_7", "-features", "a,b"}
		if code := run(context.Background(), args, &out, &out); code != 0 || !strings.Contains(out.String(), "200 OK") {
			t.Errorf("tollgate %s: exit %d\n%s", strings.Join(args, " "), code, out.String())
		}
	}
	if len(got) != len(webhook.SampleTypes()) {
		t.Fatalf("server verified %d events; want %d", len(got), len(webhook.SampleTypes()))
	}
	for _, ev := range got {
		obj := ev.Data.Object
		customer := obj["customer"]
		if ev.Type == "customer.deleted" {
			customer = obj["id"]
		}
		if customer != "cus_trig" || !strings.HasPrefix(ev.ID, "evt_") || ev.APIVersion != stripe.APIVersion || ev.Created == 0 {
			t.Errorf("%s: id %q, api %q, created %d, customer %v; want an evt_ id, %s, a time, cus_trig",
				ev.Type, ev.ID, ev.APIVersion, ev.Created, customer, stripe.APIVersion)
		}
	}
	for _, ev := range got {
		switch ev.Type {
		case "customer.subscription.created":
			var sub stripe.Subscription
			if err := json.Unmarshal(ev.Data.Raw, &sub); err != nil || sub.Status != "active" ||
				sub.Items.Data[0].Price.ID != "price_basic" || sub.CurrentPeriodEnd <= sub.CurrentPeriodStart {
				t.Errorf("subscription = %+v, %v; want active on price_basic (first plan) with a period", sub, err)
			}
		case "checkout.session.completed":
			if obj := ev.Data.Object; obj["client_reference_id"] != "user_7" {
				t.Errorf("checkout client_reference_id = %v; want user_7", obj["client_reference_id"])
			}
		}
	}
}

func TestTriggerErrors(t *testing.T) {
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"error":{"code":"invalid_signature"}}`, http.StatusBadRequest)
	}))
	defer refuse.Close()
	for _, c := range []struct {
		name     string
		args     []string
		wantCode int
		want     string
	}{
		{"no event", []string{"trigger"}, 2, "usage: tollgate trigger EVENT"},
		{"unknown event", []string{"trigger", "charge.refunded"}, 2, "no sample for"},
		{"bad customer", []string{"trigger", "invoice.paid", "-customer", "bob"}, 2, "not a customer id"},
		{"bad url", []string{"trigger", "invoice.paid", "-url", "ftp://x"}, 2, "not an http(s) URL"},
		{"refused", []string{"trigger", "invoice.paid", "-url", refuse.URL}, 1, "400 Bad Request"},
		{"flags first", []string{"trigger", "-url", refuse.URL, "invoice.paid"}, 1, "400 Bad Request"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			if code := run(context.Background(), c.args, &out, &out); code != c.wantCode || !strings.Contains(out.String(), c.want) {
				t.Errorf("tollgate %v = exit %d %q; want %d containing %q", c.args, code, out.String(), c.wantCode, c.want)
			}
		})
	}
}
