package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/webhook"
)

// lostWebhook puts a subscribed customer and the event about it into the
// double; the event is never delivered.
func lostWebhook(t *testing.T, d *testrig.StripeDouble, id, customer string) {
	t.Helper()
	d.PutCustomer(&stripe.Customer{ID: customer})
	d.PutSubscription(&stripe.Subscription{ID: "sub_" + customer, Customer: &stripe.Customer{ID: customer}, Status: "active",
		CurrentPeriodEnd: time.Now().Add(time.Hour).Unix(),
		Items:            &stripe.SubscriptionItemList{Data: []*stripe.SubscriptionItem{{ID: "si_" + customer, Price: &stripe.Price{ID: "price_1"}}}}})
	obj, err := webhook.Sample("customer.subscription.created", webhook.SampleOptions{Customer: customer, Price: "price_1"})
	if err != nil {
		t.Fatal(err)
	}
	body, err := webhook.NewEvent(id, "customer.subscription.created", time.Now().Add(-time.Minute), obj)
	if err != nil {
		t.Fatal(err)
	}
	d.PutEventJSON(body)
}

// `tollgate replay`: a dry run changes nothing, the run applies the lost
// event (progress on stderr, recorded in the delivery log), and a second
// run finds it taken.
func TestReplayCommand(t *testing.T) {
	rd := testrigRedis(t)
	d := testrig.NewStripeDouble(t)
	lostWebhook(t, d, "evt_cli_lost", "cus_cli")
	cfg := operatorConfig(t, rd, d.URL(), "")
	st := openOp(t, rd)
	stored := func() bool { return st.Client.Exists(context.Background(), "op:{cus_cli}:state").Val() == 1 }

	code, out, errOut := runCLI("replay", "-config", cfg, "-since", "1h", "-dry-run")
	if code != 0 || !strings.Contains(out, "1 handled events created since") || !strings.Contains(out, "1 would be applied (dry run") ||
		!strings.Contains(out, "evt_cli_lost") || !strings.Contains(out, "would_apply") {
		t.Errorf("replay -dry-run = %d:\n%s%s", code, out, errOut)
	}
	if stored() {
		t.Fatal("a dry run stored state")
	}

	code, out, errOut = runCLI("replay", "-config", cfg, "-since", "1h")
	if code != 0 || !strings.Contains(out, "1 applied") || !strings.Contains(out, "processed") {
		t.Errorf("replay = %d:\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "replay: page 1: 1 events listed, 1 applied, 0 failed") {
		t.Errorf("replay progress on stderr = %q", errOut)
	}
	if !stored() {
		t.Error("the replayed event stored no state")
	}
	code, out, _ = runCLI("events", "-config", cfg, "-json")
	if code != 0 || !strings.Contains(out, `"event":"evt_cli_lost"`) || !strings.Contains(out, `"source":"replay"`) {
		t.Errorf("events after the replay = %d %s; want the replayed event", code, out)
	}

	code, out, _ = runCLI("replay", "-config", cfg, "-since", "1h", "-json")
	var rep struct {
		Listed   int            `json:"listed"`
		Results  map[string]int `json:"results"`
		Events   []any          `json:"events"`
		Complete bool           `json:"complete"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || rep.Listed != 1 || rep.Results["duplicate"] != 1 ||
		!rep.Complete || rep.Events == nil || len(rep.Events) != 0 {
		t.Errorf("second replay -json = %d %s (%v); want 1 listed, 1 duplicate, complete", code, out, err)
	}
}

// Stripe failing to list: exit 1, a message naming the page and saying to
// run again, and with -json a report marked incomplete.
func TestReplayCommandStripeFailure(t *testing.T) {
	rd := testrigRedis(t)
	d := testrig.NewStripeDouble(t)
	lostWebhook(t, d, "evt_cli_fail", "cus_cli_fail")
	cfg := operatorConfig(t, rd, d.URL(), "")
	d.FailNextWith(100, testrig.Fault{Status: 500, Type: "api_error", Message: "An unknown error occurred", ShouldRetry: "true",
		Method: "GET", PathPrefix: "/v1/events"})
	code, out, errOut := runCLI("replay", "-config", cfg, "-since", "1h", "-json")
	if code != 1 || !strings.Contains(errOut, "list events (page 1)") || !strings.Contains(errOut, "run it again") {
		t.Errorf("replay while Stripe fails = %d, stderr %q", code, errOut)
	}
	var rep struct {
		Complete bool   `json:"complete"`
		Error    string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Complete || !strings.Contains(rep.Error, "page 1") {
		t.Errorf("replay -json while Stripe fails = %s (%v); want complete false with the error", out, err)
	}
	d.Reset()
	if code, out, errOut := runCLI("replay", "-config", cfg, "-since", "1h"); code != 0 || !strings.Contains(out, "1 applied") {
		t.Errorf("replay once Stripe is back = %d:\n%s%s", code, out, errOut)
	}
}

// The flags' errors name the flag and the value; -h exits 0 with
// examples; replay needs a Stripe key.
func TestReplayCommandErrors(t *testing.T) {
	rd := testrigRedis(t)
	noStripe := operatorConfig(t, rd, "", "")
	for _, c := range []struct {
		args     []string
		wantCode int
		wantOut  string
	}{
		{[]string{"replay", "-h"}, 0, "Examples:"},
		{[]string{"replay", "-config", noStripe}, 2, "-since required"},
		{[]string{"replay", "-config", noStripe, "-since", "soon"}, 2, `-since "soon" is neither a duration`},
		{[]string{"replay", "-config", noStripe, "-since", "-2h"}, 2, `-since "-2h" is negative`},
		{[]string{"replay", "-config", noStripe, "-since", "1h", "-rate", "0"}, 2, "-rate 0: must be more than 0"},
		{[]string{"replay", "-since", "1h"}, 2, "-config FILE is required"},
		{[]string{"replay", "-config", noStripe, "-since", "1h"}, 1, "stripe.secret_key is required"},
		{[]string{"replay", "-config", noStripe, "-since", "1h", "extra"}, 2, `unexpected argument "extra"`},
	} {
		code, out, errOut := runCLI(c.args...)
		if code != c.wantCode || !strings.Contains(out+errOut, c.wantOut) {
			t.Errorf("tollgate %v = %d %q; want %d with %q", c.args, code, out+errOut, c.wantCode, c.wantOut)
		}
	}
}
