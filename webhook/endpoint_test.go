package webhook

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/entitlements"
)

// The endpoint's answers to everything that is not a usable Stripe event,
// and to the edges of the ones that are. Every refused delivery must leave
// the customer's state untouched and make no Stripe call.
func TestEndpointAnswers(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.double.PutCustomer(&stripe.Customer{ID: "cus_e"})
	r.double.PutSubscription(sub("sub_e", "cus_e", "active", "price_pro", time.Now().Add(time.Hour)))

	n := 0
	valid := func(mutate func(map[string]any)) []byte {
		n++
		obj := sample(t, "customer.subscription.updated", SampleOptions{Customer: "cus_e", Price: "price_pro"})
		var ev map[string]any
		json.Unmarshal(event(t, fmt.Sprintf("evt_endpoint_%d", n), "customer.subscription.updated", time.Now(), obj), &ev)
		if mutate != nil {
			mutate(ev)
		}
		b, _ := json.Marshal(ev)
		return b
	}
	signAt := func(d time.Duration, s string) func([]byte) string {
		return func(b []byte) string { return SignatureHeader(b, s, time.Now().Add(d)) }
	}
	now := signAt(0, secret)
	big := append(valid(nil), make([]byte, MaxBodyBytes)...)

	for _, c := range []struct {
		name        string
		method      string
		contentType string
		body        []byte
		sign        func([]byte) string
		wantStatus  int
		wantInBody  string
	}{
		{"GET is not allowed", http.MethodGet, "", valid(nil), now, 405, "method_not_allowed"},
		{"PUT is not allowed", http.MethodPut, "", valid(nil), now, 405, "method_not_allowed"},
		{"text/plain", "", "text/plain", valid(nil), now, 400, "unsupported_content_type"},
		{"form encoded", "", "application/x-www-form-urlencoded", valid(nil), now, 400, "unsupported_content_type"},
		{"latin1 charset", "", "application/json; charset=iso-8859-1", valid(nil), now, 400, "unsupported_content_type"},
		{"no content type", "", "-", valid(nil), now, 400, "unsupported_content_type"},
		{"json without charset", "", "application/json", valid(nil), now, 200, `"result":"processed"`},
		{"json with upper-case charset", "", "application/json; charset=UTF-8", valid(nil), now, 200, `"result":"processed"`},
		{"oversized body", "", "", big, now, 413, "body_too_large"},
		{"no signature", "", "", valid(nil), func([]byte) string { return "" }, 400, "invalid_signature"},
		{"garbage signature header", "", "", valid(nil), func([]byte) string { return "t=abc,v1=zz" }, 400, "invalid_signature"},
		{"wrong HMAC", "", "", valid(nil), func(b []byte) string {
			return strings.Replace(now(b), "v1=", "v1=00", 1)
		}, 400, "invalid_signature"},
		{"signature of another body", "", "", valid(nil), func([]byte) string { return now(valid(nil)) }, 400, "invalid_signature"},
		{"old timestamp (301s)", "", "", valid(nil), signAt(-301*time.Second, secret), 400, "invalid_signature"},
		{"future timestamp (301s)", "", "", valid(nil), signAt(301*time.Second, secret), 400, "invalid_signature"},
		// stripe-go verifies the last t=; a present t= first must not hide a
		// signed future one from the future-timestamp check.
		{"two timestamps, the signed one in the future", "", "", valid(nil), func(b []byte) string {
			return fmt.Sprintf("t=%d,", time.Now().Unix()) + SignatureHeader(b, secret, time.Now().Add(600*time.Second))
		}, 400, "invalid_signature"},
		{"timestamp 250s ago", "", "", valid(nil), signAt(-250*time.Second, secret), 200, `"result":"processed"`},
		{"timestamp 250s ahead", "", "", valid(nil), signAt(250*time.Second, secret), 200, `"result":"processed"`},
		{"rotated-out secret", "", "", valid(nil), signAt(0, oldSecret), 400, "invalid_signature"},
		{"signed garbage", "", "", []byte(`{"id":"evt_x","type":`), now, 400, "malformed_event"},
		{"signed array", "", "", []byte(`[1,2,3]`), now, 400, "malformed_event"},
		{"no event id", "", "", valid(func(ev map[string]any) { delete(ev, "id") }), now, 400, "malformed_event"},
		{"event id with a hash tag", "", "", valid(func(ev map[string]any) { ev["id"] = "evt_{x}" }), now, 400, "malformed_event"},
		{"no created", "", "", valid(func(ev map[string]any) { delete(ev, "created") }), now, 400, "malformed_event"},
		{"no data.object", "", "", valid(func(ev map[string]any) { ev["data"] = map[string]any{} }), now, 400, "malformed_event"},
		{"customer id with braces", "", "", valid(func(ev map[string]any) {
			ev["data"].(map[string]any)["object"].(map[string]any)["customer"] = "cus_{a}"
		}), now, 400, "malformed_event"},
		{"another API version", "", "", valid(func(ev map[string]any) { ev["api_version"] = "2020-08-27" }), now, 200, `"result":"processed"`},
		{"null API version", "", "", valid(func(ev map[string]any) { ev["api_version"] = nil }), now, 200, `"result":"processed"`},
		{"unhandled type", "", "", valid(func(ev map[string]any) { ev["type"] = "charge.refunded" }), now, 200, `"result":"ignored"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			r.store.Update(t.Context(), "cus_e", func(*entitlements.State) (*entitlements.State, error) { return nil, nil })
			calls := r.double.Count("", "")
			method := c.method
			if method == "" {
				method = http.MethodPost
			}
			req, _ := http.NewRequest(method, r.url, strings.NewReader(string(c.body)))
			if c.contentType != "-" {
				ct := c.contentType
				if ct == "" {
					ct = "application/json; charset=utf-8"
				}
				req.Header.Set("Content-Type", ct)
			}
			if sig := c.sign(c.body); sig != "" {
				req.Header.Set("Stripe-Signature", sig)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.wantStatus || !strings.Contains(string(body), c.wantInBody) {
				t.Errorf("%s = %d %s; want %d containing %q", c.name, resp.StatusCode, body, c.wantStatus, c.wantInBody)
			}
			if c.wantStatus == 405 && resp.Header.Get("Allow") != "POST" {
				t.Errorf("405 without Allow: POST (got %q)", resp.Header.Get("Allow"))
			}
			changed := r.state("cus_e") != nil
			if wantChange := strings.Contains(c.wantInBody, "processed"); changed != wantChange {
				t.Errorf("state changed = %v; want %v", changed, wantChange)
			}
			if c.wantStatus != 200 && r.double.Count("", "") != calls {
				t.Errorf("a refused delivery called Stripe %d times", r.double.Count("", "")-calls)
			}
		})
	}
	if got := counted(r.metrics, "unverified", "invalid"); got < 15 {
		t.Errorf(`webhook_events_total{type="unverified",result="invalid"} = %v; want every refused delivery counted`, got)
	}
	if got := counted(r.metrics, "other", "ignored"); got != 1 {
		t.Errorf(`webhook_events_total{type="other",result="ignored"} = %v; want 1 (unknown types are labelled "other")`, got)
	}
}

// During a secret rotation Stripe signs with both secrets; tollgate, holding
// both, accepts either signature alone and a header carrying both.
func TestSecretRotation(t *testing.T) {
	r := newRig(t, rigOptions{embedded: true, trusted: true, mutate: func(o *Options) {
		o.Secrets = []string{secret, oldSecret}
	}})
	for i, sign := range []func([]byte) string{
		func(b []byte) string { return SignatureHeader(b, oldSecret, time.Now()) },
		func(b []byte) string { return SignatureHeader(b, secret, time.Now()) },
		func(b []byte) string {
			old := SignatureHeader(b, oldSecret, time.Now())
			cur := SignatureHeader(b, secret, time.Now())
			return old + "," + cur[strings.Index(cur, "v1="):]
		},
		func(b []byte) string {
			bad := SignatureHeader(b, "whsec_unknown", time.Now())
			cur := SignatureHeader(b, secret, time.Now())
			return bad + "," + cur[strings.Index(cur, "v1="):]
		},
	} {
		body := subEvent(t, fmt.Sprintf("evt_rotation_%d", i), "customer.subscription.created", "cus_rot", "active", time.Now())
		if code, resp := post(t, r.url, body, sign(body), ""); code != 200 {
			t.Errorf("signature variant %d = %d %s; want 200", i, code, resp)
		}
	}
}

// A replay of a processed event (Stripe's duplicate delivery, or an
// attacker resending a captured one within the window) has no second
// effect and calls Stripe no more.
func TestReplayOfProcessedEvent(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.double.PutCustomer(&stripe.Customer{ID: "cus_r"})
	r.double.PutSubscription(sub("sub_r", "cus_r", "active", "price_pro", time.Now().Add(time.Hour)))
	body := subEvent(t, "evt_replay", "customer.subscription.created", "cus_r", "", time.Now())
	r.mustDeliver(body, resultProcessed)
	first := r.state("cus_r")
	calls := r.double.Count("", "")
	for range 3 {
		r.mustDeliver(body, resultDuplicate)
	}
	if got := r.double.Count("", ""); got != calls {
		t.Errorf("replays made %d Stripe calls; want 0", got-calls)
	}
	if got := r.state("cus_r"); !got.UpdatedAt.Equal(first.UpdatedAt) || got.Source != "webhook:evt_replay" {
		t.Errorf("replay rewrote the state: %+v", got)
	}
	if got := counted(r.metrics, "customer.subscription.created", resultDuplicate); got != 3 {
		t.Errorf("duplicates counted %v; want 3", got)
	}
}
