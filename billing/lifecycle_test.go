package billing

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/config"
)

// Pausing collection stops billing and access at once on this replica;
// resuming brings both back. Stripe is told pause_collection[behavior]=void
// and, on resume, pause_collection="" (unset).
func TestPauseAndResume(t *testing.T) {
	r := newRig(t)
	r.subscribe("cus_A", "sub_A", stripe.SubscriptionStatusActive, "price_pro_m")
	require := config.Require{Subscription: true}
	week := r.now.Add(7 * 24 * time.Hour).Unix()

	a := r.call("POST", "/subscription/pause", "u1", "cus_A", `{"resumes_at":`+strconv.FormatInt(week, 10)+`}`)
	pc, _ := a.body["pause_collection"].(map[string]any)
	if a.status != http.StatusOK || pc == nil || pc["behavior"] != "void" || pc["resumes_at"] != time.Unix(week, 0).UTC().Format(time.RFC3339) {
		t.Fatalf("pause = %d %s; want 200, void until %d", a.status, a.raw, week)
	}
	upd := r.stripeCalls("POST", "/v1/subscriptions/sub_A")
	if len(upd) != 1 || upd[0].Form.Get("pause_collection[behavior]") != "void" ||
		upd[0].Form.Get("pause_collection[resumes_at]") != strconv.FormatInt(week, 10) || upd[0].IdempotencyKey == "" {
		t.Fatalf("Stripe update = %v; want pause_collection void until %d, with an idempotency key", upd, week)
	}
	d := r.gate.Decide(t.Context(), "cus_A", require, false)
	if d.Denial == nil || d.Denial.Status != http.StatusPaymentRequired || !strings.Contains(d.Denial.Message, "paused") {
		t.Errorf("gate while paused = %+v; want 402 saying the subscription is paused", d.Denial)
	}
	g := r.call("GET", "/subscription", "u1", "cus_A", "")
	if g.body["entitled"] != false || g.body["pause_collection"] == nil || g.str("status") != "active" {
		t.Errorf("subscription while paused = %s; want not entitled, pause_collection shown, status still active", g.raw)
	}

	// The same pause again changes nothing; pausing until resumed replaces resumes_at.
	r.call("POST", "/subscription/pause", "u1", "cus_A", `{"resumes_at":`+strconv.FormatInt(week, 10)+`}`)
	if n := len(r.stripeCalls("POST", "/v1/subscriptions/sub_A")); n != 1 {
		t.Errorf("pausing again as paused made %d updates; want still 1", n)
	}
	if a := r.call("POST", "/subscription/pause", "u1", "cus_A", `{}`); a.status != http.StatusOK ||
		a.body["pause_collection"].(map[string]any)["resumes_at"] != nil {
		t.Errorf("pause until resumed = %d %s; want no resumes_at", a.status, a.raw)
	}

	a = r.call("POST", "/subscription/resume", "u1", "cus_A", "")
	if a.status != http.StatusOK || a.body["pause_collection"] != nil {
		t.Fatalf("resume = %d %s; want 200, pause_collection null", a.status, a.raw)
	}
	upd = r.stripeCalls("POST", "/v1/subscriptions/sub_A")
	if last := upd[len(upd)-1]; !last.Form.Has("pause_collection") || last.Form.Get("pause_collection") != "" || last.Form.Has("cancel_at_period_end") {
		t.Errorf("resume sent %v; want pause_collection=\"\" only", last.Form)
	}
	if s, _ := r.double.Subscription("sub_A"); s.PauseCollection != nil {
		t.Errorf("double still paused: %+v", s.PauseCollection)
	}
	if d := r.gate.Decide(t.Context(), "cus_A", require, false); d.Denial != nil {
		t.Errorf("gate after resume = %+v; want allowed", d.Denial)
	}
}

func TestPauseRefusals(t *testing.T) {
	r := newRig(t)
	r.subscribe("cus_A", "sub_A", stripe.SubscriptionStatusActive, "price_pro_m")
	r.subscribe("cus_D", "sub_D", stripe.SubscriptionStatusPastDue, "price_pro_m")
	r.subscribe("cus_C", "sub_C", stripe.SubscriptionStatusActive, "price_pro_m")
	if a := r.call("POST", "/subscription/cancel", "u3", "cus_C", ""); a.status != http.StatusOK {
		t.Fatal(a.raw)
	}
	at := func(d time.Duration) string {
		return `{"resumes_at":` + strconv.FormatInt(r.now.Add(d).Unix(), 10) + `}`
	}
	for _, tc := range []struct {
		name, customer, body string
		status               int
		code                 string
	}{
		{"in the past", "cus_A", at(-time.Hour), 400, "invalid_request"},
		{"now", "cus_A", at(0), 400, "invalid_request"},
		{"under an hour", "cus_A", at(59 * time.Minute), 400, "invalid_request"},
		{"over a year", "cus_A", at(366 * 24 * time.Hour), 400, "invalid_request"},
		{"not a number", "cus_A", `{"resumes_at":"tomorrow"}`, 400, "invalid_request"},
		{"huge", "cus_A", `{"resumes_at":99999999999999999999}`, 400, "invalid_request"},
		{"unknown field", "cus_A", `{"behavior":"keep_as_draft"}`, 400, "invalid_request"},
		{"no customer", "", `{}`, 409, "no_customer"},
		{"past_due", "cus_D", `{}`, 409, "not_pausable"},
		{"canceling", "cus_C", `{}`, 409, "subscription_canceling"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := r.call("POST", "/subscription/pause", "u1", tc.customer, tc.body)
			if a.status != tc.status || a.code() != tc.code {
				t.Errorf("pause %s = %d %s; want %d %s", tc.body, a.status, a.raw, tc.status, tc.code)
			}
		})
	}
	for _, sub := range []string{"sub_A", "sub_D"} {
		if n := len(r.stripeCalls("POST", "/v1/subscriptions/"+sub)); n != 0 {
			t.Errorf("refused pauses updated %s %d times", sub, n)
		}
	}
}
